"""What a message is made of: templates, the sandbox, rendering, links, coupons, email and SMS text, DKIM."""
