#!/usr/bin/env bash
# The kernel-facing test suites inside QEMU, on Debian's own kernels (default: 6.1 and 6.12),
# so kprobes, fentry/fexit, LSM and modules, which the CI kernel lacks, really run.
#
#   bash scripts/vmtest.sh [KERNEL...]        KERNEL: 6.1, 6.12, or a package such as linux-image-6.1.0-57-amd64
#   TSLCC_VM_SUITES="test/kernel/attach.test.ts" bash scripts/vmtest.sh 6.12   (default: test/kernel test/tools)
#
# The guest boots a busybox initramfs that mounts this host's root read-only over 9p, puts
# a tmpfs overlay on it for writes, and runs vitest there: the same node, clang and checkout.
# Kernel packages are downloaded once (apt-get download, never installed) into
# $TSLCC_VM_CACHE (default /var/cache/tslcc-vm). Each kernel has a time limit
# ($TSLCC_VM_TIMEOUT seconds, default 1500). Exit status: 0 when every kernel's suites pass.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CACHE=${TSLCC_VM_CACHE:-/var/cache/tslcc-vm}
TIMEOUT=${TSLCC_VM_TIMEOUT:-1500}
SUITES=${TSLCC_VM_SUITES:-test/kernel test/tools}
MEM=${TSLCC_VM_MEM:-4G}
CPUS=${TSLCC_VM_CPUS:-2}
KERNELS=("$@")
((${#KERNELS[@]})) || KERNELS=(6.1 6.12)

say() { echo "vmtest: $*" >&2; }
die() { say "$*"; exit 2; }

[ "$(id -u)" -eq 0 ] || die "needs root (apt-get download, and the guest runs the kernel tests as root)"
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
# busybox-static: the initramfs, and (seen through the shared root) the guest's poweroff.
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx insmod || need+=(busybox-static)
command -v xz >/dev/null || need+=(xz-utils)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || need+=(kmod)
if ((${#need[@]})); then
  say "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } ||
    die "cannot install ${need[*]} (apt-get failed); install them and retry"
fi
[ "$(uname -m)" = x86_64 ] || die "the VM suite boots amd64 kernels; this host is $(uname -m)"
[ -f packages/native/build/Release/tslcc_native.node ] || die "build first (npm run build, or npm test which runs scripts/setup.sh)"
mkdir -p "$CACHE"

# The package of a kernel: "6.1" is bookworm's linux-image-amd64, "6.12" its linux-image-6.12-amd64.
resolve() {
  local want=$1 meta pkg
  case $want in
    linux-image-*) echo "$want"; return ;;
    6.1) meta=linux-image-amd64 ;;
    *) meta=linux-image-$want-amd64 ;;
  esac
  pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  if [ -z "$pkg" ]; then
    # No package lists (offline, or apt-get update never ran): a kernel downloaded before.
    pkg=$(ls -d "$CACHE"/linux-image-"$want"*-amd64 2>/dev/null | grep -v -- '-cloud-\|-rt-' | sort -V | tail -1 | xargs -r basename)
  fi
  [ -n "$pkg" ] || { apt-get update -qq >/dev/null 2>&1 && pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'); }
  echo "$pkg"
}

# Download (once) and unpack a kernel package; prints the unpacked directory.
fetch() {
  local pkg=$1 dir=$CACHE/$1
  if [ ! -d "$dir/boot" ]; then
    local deb
    deb=$(ls "$CACHE/${pkg}"_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
      (cd "$CACHE" && apt-get download -q "$pkg" >/dev/null 2>&1) || die "cannot download $pkg (apt-get download failed; no network or no such package)"
      deb=$(ls "$CACHE/${pkg}"_*.deb | head -1)
    fi
    rm -rf "$dir.tmp" && dpkg-deb -x "$deb" "$dir.tmp" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

# Modules the guest needs for the 9p root and the overlay, with their dependencies in
# load order (from modules.dep), decompressed: busybox's insmod reads plain .ko files.
modules_for() {
  local moddir=$1; shift
  local -A seen=()
  local order=()
  visit() {
    local rel=$1 dep
    [ -n "${seen[$rel]:-}" ] && return
    seen[$rel]=1
    for dep in $(awk -v m="$rel:" '$1 == m { for (i = 2; i <= NF; i++) print $i }' "$moddir/modules.dep"); do visit "$dep"; done
    order+=("$rel")
  }
  local name rel
  for name in "$@"; do
    rel=$(awk -F: -v n="$name" '{ f = $1; sub(/.*\//, "", f); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", f); if (f == n) { print $1; exit } }' "$moddir/modules.dep")
    [ -n "$rel" ] && visit "$rel" # absent: built in
  done
  printf '%s\n' "${order[@]}"
}

# The initramfs: busybox, the modules, and an init that mounts the host root and runs the suites.
initramfs() {
  local kdir=$1 release=$2 out=$3
  local root
  root=$(mktemp -d)
  mkdir -p "$root"/{bin,dev,proc,sys,mnt/lower,mnt/rw,mnt/root,modules}
  cp /bin/busybox "$root/bin/busybox"
  local moddir=$kdir/lib/modules/$release i=0 m
  # The package ships no modules.dep (depmod makes it at install time).
  [ -s "$moddir/modules.dep" ] || depmod -b "$kdir" "$release" || die "depmod failed for $release"
  : > "$root/modules/order"
  for m in $(modules_for "$moddir" virtio_pci 9pnet_virtio 9p overlay); do
    local dst
    dst=$(printf '%02d-%s' $i "$(basename "$m" | sed -E 's/\.(xz|zst|gz)$//')")
    case $m in
      *.xz) xz -dc "$moddir/$m" > "$root/modules/$dst" ;;
      *.zst) zstd -dcq "$moddir/$m" > "$root/modules/$dst" ;;
      *.gz) gzip -dc "$moddir/$m" > "$root/modules/$dst" ;;
      *) cp "$moddir/$m" "$root/modules/$dst" ;;
    esac
    echo "$dst" >> "$root/modules/order"
    i=$((i + 1))
  done
  cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m 2>/dev/null || echo "init: insmod $m failed"; done
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose host /mnt/lower; then
  echo "init: cannot mount the host root over 9p"; poweroff -f
fi
mount -t tmpfs -o size=75% rw /mnt/rw && mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work overlay /mnt/root
R=/mnt/root
mount -t proc proc $R/proc; mount -t sysfs sys $R/sys; mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm; mount -t devpts devpts $R/dev/pts; mount -t tmpfs shm $R/dev/shm
# No tmpfs over /tmp: a checkout under /tmp must stay visible (writes go to the overlay anyway).
mount -t tmpfs run $R/run
mount -t bpf bpf $R/sys/fs/bpf; mount -t tracefs tracefs $R/sys/kernel/tracing; mount -t debugfs debugfs $R/sys/kernel/debug
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup; mount -t securityfs securityfs $R/sys/kernel/security
ip link set lo up
. /vmtest.env
# switch_root, not chroot: inside a chroot the kernel refuses new user namespaces (EPERM), and
# the compile server's sandbox (bubblewrap) needs one.
cat > $R/run/vmtest-run.sh <<RUN
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root CI=true TERM=dumb
export TSLCC_VM='$TSLCC_VM' TSLCC_CORE_OBJECT='$TSLCC_CORE_OBJECT' TSLCC_CORE_EXPECT='$TSLCC_CORE_EXPECT'
echo "vmtest: guest \$(uname -r) up; running $TSLCC_VM_SUITES"
cd '$TSLCC_REPO' && node node_modules/vitest/vitest.mjs run $TSLCC_VM_SUITES
echo "TSLCC_VM_STATUS=\$?"
/bin/busybox poweroff -f
RUN
exec switch_root $R /bin/sh /run/vmtest-run.sh
EOF
  chmod +x "$root/init"
  cat > "$root/vmtest.env" <<EOF
TSLCC_REPO='$REPO'
TSLCC_VM_SUITES='$SUITES'
TSLCC_VM='$release'
TSLCC_CORE_OBJECT='${TSLCC_CORE_OBJECT:-}'
TSLCC_CORE_EXPECT='${TSLCC_CORE_EXPECT:-}'
EOF
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
  rm -rf "$root"
}

# KVM when it works (on some hosts a guest fails with "failed to set MSR"), else TCG.
accel() {
  if [ -w /dev/kvm ] && [ -z "${TSLCC_VM_NO_KVM:-}" ]; then
    if timeout 20 qemu-system-x86_64 -accel kvm -cpu host -m 128M -nographic -no-reboot -kernel "$1" -append "console=ttyS0 panic=-1 init=/bin/true" </dev/null 2>&1 |
      grep -q 'Kernel panic\|Run /bin/true\|VFS'; then
      echo "-accel kvm -cpu host"; return
    fi
  fi
  echo "-accel tcg,thread=multi -cpu max"
}

# CO-RE, really: one object compiled here, on the host, that test/kernel/core.test.ts loads
# unchanged in every guest kernel.
TSLCC_CORE_OBJECT=$CACHE/core.bpf.o
TSLCC_CORE_EXPECT=$(node scripts/core-object.mjs "$TSLCC_CORE_OBJECT") || die "cannot compile test/fixtures/core.bpf.c on the host"
export TSLCC_CORE_OBJECT TSLCC_CORE_EXPECT

status=0
summary=()
for k in "${KERNELS[@]}"; do
  pkg=$(resolve "$k")
  [ -n "$pkg" ] || die "no kernel package for \"$k\" (apt-cache knows none and none is cached in $CACHE)"
  kdir=$(fetch "$pkg")
  release=$(ls "$kdir/lib/modules" | head -1)
  vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -1)
  initrd=$CACHE/initramfs-$release.cpio.gz
  initramfs "$kdir" "$release" "$initrd"
  acc=$(accel "$vmlinuz")
  say "booting $release ($acc, $CPUS vCPUs, $MEM) for: $SUITES"
  log=$(mktemp)
  t0=$(date +%s)
  # shellcheck disable=SC2086
  timeout --foreground -k 10 "$TIMEOUT" qemu-system-x86_64 $acc -m "$MEM" -smp "$CPUS" -nographic -no-reboot \
    -kernel "$vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
    -virtfs "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap" \
    </dev/null 2>&1 | tee "$log" || true
  secs=$(( $(date +%s) - t0 ))
  rc=$(sed -n 's/.*TSLCC_VM_STATUS=\([0-9]*\).*/\1/p' "$log" | tail -1)
  if [ -z "$rc" ]; then
    say "$release: no result after ${secs}s (time limit ${TIMEOUT}s, or the guest did not boot)"
    rc=124
  fi
  summary+=("$release: exit $rc in ${secs}s")
  [ "$rc" = 0 ] || status=1
  rm -f "$log"
done
for s in "${summary[@]}"; do say "$s"; done
exit $status
