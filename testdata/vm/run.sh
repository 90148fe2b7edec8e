#!/usr/bin/env bash
# Boots Debian's kernel under QEMU (TCG) on pure cgroup v2 with an initramfs
# holding busybox, crashwatch and the test programs, and runs init.sh's
# scenarios in it. See README.md here.
#
#   testdata/vm/run.sh CRASHWATCH WORKDIR
#
# WORKDIR gets the initramfs and two logs: console.log (the kernel's
# console, ttyS0) and results.txt (init.sh's "SCENARIO<TAB>KEY<TAB>VALUE"
# lines, ttyS1). Exits with QEMU's status, 124 if it had to be killed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
testdata=$(dirname "$here")
crashwatch=${1:?usage: run.sh CRASHWATCH WORKDIR}
work=${2:?usage: run.sh CRASHWATCH WORKDIR}
# Generous: the whole run takes well under a minute, a hang must not block CI.
timeout_secs=${CRASHWATCH_VM_TIMEOUT:-300}

fail() {
  echo "run.sh: $*" >&2
  exit 2
}

kernel=${CRASHWATCH_VM_KERNEL:-$(ls -1v /boot/vmlinuz-* 2>/dev/null | tail -n 1)}
[ -n "$kernel" ] && [ -r "$kernel" ] || fail "no readable kernel in /boot (apt-get install linux-image-amd64)"
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 is missing (apt-get install qemu-system-x86)"
busybox=$(command -v busybox) || fail "busybox is missing (apt-get install busybox-static)"
# A dynamic busybox would need its libraries in the initramfs too.
if ldd "$busybox" >/dev/null 2>&1; then fail "$busybox is not static (apt-get install busybox-static)"; fi

root=$work/root
rm -rf "$root" "$work/console.log" "$work/results.txt"
mkdir -p "$root"/{bin,dev,proc,sys,tmp}
cp "$busybox" "$root/bin/busybox"
cp "$here/init.sh" "$root/init"
chmod 755 "$root/init"

# The test programs, static: no libraries to carry.
cflags=(-static -O0 -g -Wall -Werror -pthread -fno-omit-frame-pointer)
gcc "${cflags[@]}" -o "$root/bin/hog" "$testdata/hog.c"
gcc "${cflags[@]}" -o "$root/bin/grow" "$testdata/grow.c"
gcc "${cflags[@]}" -o "$root/bin/spike" "$testdata/spike.c"
gcc "${cflags[@]}" -o "$root/bin/runas" "$here/runas.c"

# crashwatch as built, less its own debug info (it is not what the scenarios
# symbolicate; it only makes the image larger), with the shared libraries
# it needs at the paths ldd gives.
objcopy --strip-debug "$crashwatch" "$root/bin/crashwatch"
for lib in $(ldd "$crashwatch" | grep -o '/[^ ]*'); do
  cp -L --parents "$lib" "$root"
done

(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null) >"$work/initramfs.cpio"

# ttyS0: the kernel's console; ttyS1: the results. No disk, no network;
# -no-reboot turns init's reboot (or a panic, with panic=-1) into QEMU's exit.
status=0
timeout --kill-after=10 "$timeout_secs" qemu-system-x86_64 \
  -accel tcg -m 1024 -smp 1 \
  -nodefaults -display none -no-reboot \
  -kernel "$kernel" -initrd "$work/initramfs.cpio" \
  -append "console=ttyS0 quiet panic=-1 systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all" \
  -serial "file:$work/console.log" -serial "file:$work/results.txt" || status=$?
exit "$status"
