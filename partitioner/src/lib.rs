//! Disk discovery and safety, the install plan (dry-run), GPT, LUKS2, filesystems, and applying the plan. Not implemented yet (see the partitioner issue).
