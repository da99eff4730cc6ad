//! Reading the machine, verdicts per requirement, and the HCL report.
