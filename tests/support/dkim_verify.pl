#!/usr/bin/perl
# An independent DKIM verifier for the tests: Perl's Mail::DKIM (Debian: libmail-dkim-perl).
#
#   perl tests/support/dkim_verify.pl NAME=TXT-VALUE ... < message.eml
#
# DNS is answered from the NAME=VALUE arguments only (no network). Prints one line per
# DKIM-Signature, top to bottom: "<result> a=<algorithm> d=<domain> s=<selector> (<detail>)",
# then "overall: <result>". Exit status 0 whenever the message could be read.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS;

my %records;
for my $arg (@ARGV) {
    my ($name, $value) = split /=/, $arg, 2;
    $records{lc $name} = $value;
}

package FakeResolver;
sub new { my ($class, $records) = @_; return bless { records => $records, error => 'NOERROR' }, $class }
sub errorstring { return $_[0]{error} }
sub send {
    my ($self, $domain, $type) = @_;
    my $packet = Net::DNS::Packet->new($domain, $type);
    $packet->header->qr(1);
    my $value = $self->{records}{lc $domain};
    if (!defined $value) {
        $packet->header->rcode('NXDOMAIN');
        return $packet;
    }
    my @chunks = unpack('(A255)*', $value);  # a TXT record is a list of strings of at most 255
    $packet->push(answer => Net::DNS::RR->new(name => $domain, type => 'TXT', txtdata => \@chunks));
    return $packet;
}

package main;
Mail::DKIM::DNS::resolver(FakeResolver->new(\%records));
binmode STDIN;
my $dkim = Mail::DKIM::Verifier->new();
while (my $line = <STDIN>) {
    $line =~ s/\r?\n\z/\r\n/;  # Mail::DKIM wants CRLF line ends
    $dkim->PRINT($line);
}
$dkim->CLOSE;
for my $sig ($dkim->signatures) {
    printf "%s a=%s d=%s s=%s (%s)\n", $sig->result, $sig->algorithm, $sig->domain, $sig->selector,
        $sig->result_detail // '';
}
printf "overall: %s\n", $dkim->result;
