"""`s3e-edge`: the command line, one module per command."""
