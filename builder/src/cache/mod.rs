//! Layer cache (`--cache`, `--cache-repo`, …). Built with the RUN issue.
