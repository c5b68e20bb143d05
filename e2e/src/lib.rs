//! End-to-end harness: a control plane built from source, kwok nodes and a
//! pod runner. Filled by the e2e issue.
