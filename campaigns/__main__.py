"""`python -m campaigns` runs the same CLI as the `campaigns` console script."""

from campaigns.cli import main

if __name__ == "__main__":
    main()
