/*
 * LD_PRELOAD shim that lets Debian's real `xl create -n` (dry run) run on a
 * machine without Xen. xl's dry run parses and checks the whole config with
 * libxl/libxlutil and prints the resulting domain config as JSON, but first
 * opens the hypervisor interface and asks it for the version and the
 * physical CPU/memory layout. These few calls are answered here with a
 * plausible 2-CPU host; everything that judges the config is Xen's own code.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned flags) {
    (void)logger; (void)dombuild_logger; (void)flags;
    return calloc(1, 65536);
}
int xc_interface_close(void *xch) { (void)xch; return 0; }
void *xs_open(unsigned long flags) { (void)flags; return calloc(1, 65536); }
void xs_close(void *h) { (void)h; }
void xs_daemon_close(void *h) { (void)h; }

int xc_version(void *xch, int cmd, void *arg) {
    size_t n = 0;
    (void)xch;
    switch (cmd) {
    case 0: return (4 << 16) | 17;     /* XENVER_version */
    case 1: n = 16; break;             /* extraversion */
    case 2: n = 144; break;            /* compile_info */
    case 3: n = 1024; break;           /* capabilities */
    case 4: n = 64; break;             /* changeset */
    case 5: n = 8; break;              /* platform_parameters */
    case 7: return 4096;               /* pagesize */
    case 9: n = 1024; break;           /* commandline */
    default: return -1;
    }
    if (arg && n) memset(arg, 0, n);
    return 0;
}

int xc_get_max_cpus(void *xch) { (void)xch; return 2; }
int xc_get_online_cpus(void *xch) { (void)xch; return 2; }
int xc_get_max_nodes(void *xch) { (void)xch; return 1; }

/* threads/core, cores/socket, nr_cpus, max_cpu_id, nr_nodes, max_node_id,
 * cpu_khz, capabilities (hvm|pv|directio|hap|shadow). */
int xc_physinfo(void *xch, void *info) {
    uint32_t *u = info;
    (void)xch;
    u[0] = 1; u[1] = 2; u[2] = 2; u[3] = 1; u[4] = 1; u[5] = 0; u[6] = 2000000; u[7] = 0x1f;
    return 0;
}

long xc_memory_op(void *xch, unsigned int cmd, void *arg, size_t len) {
    (void)xch; (void)cmd; (void)arg; (void)len;
    return 0;
}
