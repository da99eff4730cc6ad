#!/bin/sh
# Loads a qubes.xml written by firstboot with qubes-core-admin's own loader
# (qubes.Qubes in offline mode) and prints the graph it sees.
# Manual check, not part of CI (qubes-core-admin is not packaged in Debian):
#   git clone https://github.com/QubesOS/qubes-core-admin /tmp/qca
#   apt-get install python3-lxml python3-jinja2 python3-yaml python3-docutils python3-pyinotify
#   firstboot --root /tmp/fb && firstboot/tools/check-with-core-admin.sh /tmp/qca /tmp/fb/var/lib/qubes/qubes.xml
set -eu
src=$1
xml=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# core-admin finds its VM classes and pool drivers through entry points,
# which an uninstalled checkout does not register: declare the few needed.
mkdir -p "$work/qubes_core-0.dist-info"
printf 'Metadata-Version: 2.1\nName: qubes-core\nVersion: 0\n' > "$work/qubes_core-0.dist-info/METADATA"
cat > "$work/qubes_core-0.dist-info/entry_points.txt" <<'EP'
[qubes.vm]
AppVM = qubes.vm.appvm:AppVM
TemplateVM = qubes.vm.templatevm:TemplateVM
AdminVM = qubes.vm.adminvm:AdminVM
DispVM = qubes.vm.dispvm:DispVM

[qubes.storage]
file = qubes.storage.file:FilePool
linux-kernel = qubes.storage.kernels:LinuxKernel
lvm_thin = qubes.storage.lvm:ThinPool

[qubes.devices]
pci = qubes.ext.pci:PCIDevice
EP
cp "$xml" "$work/qubes.xml"
PYTHONPATH="$src/test-packages:$src:$work" /usr/bin/python3 - "$work/qubes.xml" <<'PY'
import sys, qubes
app = qubes.Qubes(sys.argv[1], offline_mode=True)
print("default_template=%s default_netvm=%s updatevm=%s clockvm=%s default_dispvm=%s default_pool=%s" % (
    app.default_template, app.default_netvm, app.updatevm, app.clockvm, app.default_dispvm, app.default_pool))
for vm in sorted(app.domains):
    t = getattr(vm, "template", None)
    n = getattr(vm, "netvm", None)
    print(vm.qid, vm.name, type(vm).__name__, vm.label.name, t.name if t else "-", n.name if n else "-",
          [str(a) for a in vm.devices["pci"].get_assigned_devices()])
PY
