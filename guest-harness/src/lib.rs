//! QEMU guest test harness.
