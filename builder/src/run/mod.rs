//! RUN execution and isolation. Built with the RUN issue.
