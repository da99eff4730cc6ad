//! First boot of the installed system: vm-pool, templates, service VMs, default qubes and global preferences. Not implemented yet (see the firstboot issue).
