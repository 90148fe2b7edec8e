#!/bin/busybox sh
# /init of the cgroup v2 test VM (README.md here). Runs each scenario and
# writes what it saw as "SCENARIO<TAB>KEY<TAB>VALUE" lines to the second
# serial port, then reboots, which ends QEMU (-no-reboot). The assertions
# are in tests/cgroup_v2_vm.rs; this script only records.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
stty -F /dev/ttyS1 raw -echo
exec 3>/dev/ttyS1

CG=/sys/fs/cgroup
LIMIT=48M
USER=1000

emit() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >&3; }
emit_file() {
	[ -f "$3" ] || return 0
	while IFS= read -r line || [ -n "$line" ]; do emit "$1" "$2" "$line"; done <"$3"
}
# The cgroups below DIR on one line, relative to /sys/fs/cgroup.
cgroups_below() { echo $(find "$1" -mindepth 1 -type d | sed "s|^$CG/||"); }

# cw SCENARIO UID CGROUP ARGS...: runs `crashwatch ARGS` as UID, as the
# only process of CGROUP (relative to /sys/fs/cgroup; "" is the root), with
# a spool of its own; then records its status, output and reports.
cw() {
	s=$1 uid=$2 dir=$CG/$3
	shift 3
	mkdir -p /tmp/$s && chown $uid:$uid /tmp/$s
	# busybox timeout execs the program in its own process and watches from
	# a child, which stays where it is: the cgroup gets the shell alone.
	CRASHWATCH_SPOOL_DIR=/tmp/$s timeout 120 sh -c 'echo $$ >"$0/cgroup.procs" && exec runas "$@"' \
		"$dir" $uid crashwatch "$@" </dev/null >/tmp/$s.out 2>/tmp/$s.err
	emit $s status $?
	recorded $s $uid
}

# recorded SCENARIO [UID]: its output and reports. The spool is read as the
# user who wrote it: crashwatch refuses a spool another user owns, root too.
recorded() {
	emit_file $1 stderr /tmp/$1.err
	emit_file $1 stdout /tmp/$1.out
	CRASHWATCH_SPOOL_DIR=/tmp/$1 runas ${2:-0} crashwatch list --json >/tmp/$1.reports 2>/tmp/$1.list.err
	emit $1 list_status $?
	emit_file $1 list_stderr /tmp/$1.list.err
	emit_file $1 report /tmp/$1.reports
}

emit vm kernel "$(uname -r)"
emit vm fstype "$(awk -v cg=$CG '$2 == cg { print $3 }' /proc/mounts)"
emit vm v1_hierarchies "$(grep -c ' cgroup ' /proc/mounts)"
emit vm controllers "$(cat $CG/cgroup.controllers)"
emit vm dmesg_restrict "$(cat /proc/sys/kernel/dmesg_restrict)"
emit vm thp "$(cat /sys/kernel/mm/transparent_hugepage/enabled)"

# 1. --memory-limit as root, from the root cgroup, which has processes of
# its own (the kernel allows it there) and no controller enabled yet.
emit s1 subtree_before "$(cat $CG/cgroup.subtree_control)"
cw s1 0 "" run --memory-limit $LIMIT -- hog 400
emit s1 subtree_after "$(cat $CG/cgroup.subtree_control)"
emit s1 cgroups "$(cgroups_below $CG)"
# The root cgroup has no memory.events: doctor must not claim a count.
cw s1doctor 0 "" doctor

# From here on the root gives the memory controller to its children, as
# systemd does.
echo +memory >$CG/cgroup.subtree_control

# 2. systemd's MemoryMax=: crashwatch in a cgroup with memory.max, no
# --memory-limit; the child's OOM kill is counted in crashwatch's cgroup.
mkdir $CG/svc
echo $LIMIT >$CG/svc/memory.max
cw s2 0 svc run -- hog 400
emit s2 cgroups "$(cgroups_below $CG/svc)"
rmdir $CG/svc
emit s2 rmdir $?

# 3. A cgroup delegated to an unprivileged user (systemd's Delegate=yes:
# the directory and its cgroup.procs, cgroup.subtree_control and
# cgroup.threads belong to the user), twice: the second run needs the
# first to have left the cgroup as it found it.
mkdir $CG/deleg
chown $USER:$USER $CG/deleg $CG/deleg/cgroup.procs $CG/deleg/cgroup.subtree_control $CG/deleg/cgroup.threads
cw s3 $USER deleg run --memory-limit $LIMIT -- hog 400
emit s3 subtree_after "$(cat $CG/deleg/cgroup.subtree_control)"
emit s3 cgroups "$(cgroups_below $CG/deleg)"
cw s3again $USER deleg run --memory-limit $LIMIT -- hog 400
cw s3doctor $USER deleg doctor
emit s3 cgroups_at_end "$(cgroups_below $CG/deleg)"
# The hand-made cgroup can take processes again and be removed.
sh -c 'echo $$ >'$CG/deleg/cgroup.procs' && echo $$ >'$CG/cgroup.procs
emit s3 rejoin $?
rmdir $CG/deleg
emit s3 rmdir $?

# 4. Not delegated: a root-owned cgroup, crashwatch as the user.
mkdir $CG/nodeleg
cw s4 $USER nodeleg run --memory-limit $LIMIT -- hog 400
emit s4 cgroups "$(cgroups_below $CG/nodeleg)"
cw s4doctor $USER nodeleg doctor
rmdir $CG/nodeleg
emit s4 rmdir $?
# ... and the root cgroup itself, as the user.
cw s4root $USER "" run --memory-limit $LIMIT -- hog 400

# 4b. A hand-made cgroup that another process shares with crashwatch (as
# root): cgroup v2 gives no controller to the children of a cgroup with
# processes in it.
mkdir $CG/busy
sleep 600 &
occupant=$!
echo $occupant >$CG/busy/cgroup.procs
emit s4busy occupant $occupant
cw s4busy 0 busy run --memory-limit $LIMIT -- hog 400
emit s4busy cgroups "$(cgroups_below $CG/busy)"
kill $occupant
wait $occupant
rmdir $CG/busy
emit s4busy rmdir $?

# 4c. A cgroup whose parent gives it no memory controller.
mkdir -p $CG/nomem/inner
cw s4nomem 0 nomem/inner run --memory-limit $LIMIT -- hog 400
emit s4nomem cgroups "$(cgroups_below $CG/nomem)"
rmdir $CG/nomem/inner $CG/nomem
emit s4nomem rmdir $?

# 4d. A read-only cgroup mount, as in a container: remounted so in a mount
# namespace of crashwatch's own.
mkdir -p /tmp/s4ro
CRASHWATCH_SPOOL_DIR=/tmp/s4ro timeout 120 unshare -m sh -c \
	'mount -o remount,bind,ro /sys/fs/cgroup && exec crashwatch "$@"' sh run --memory-limit $LIMIT -- hog 400 \
	</dev/null >/tmp/s4ro.out 2>/tmp/s4ro.err
emit s4ro status $?
recorded s4ro

# 5. --oom-snapshot 50 with --memory-limit: grow pauses at 36 MiB (75%)
# inside its allocating function until crashwatch says it took the
# snapshot, then grows on into the OOM kill.
mkdir -p /tmp/s5
: >/tmp/s5.err
mkfifo /tmp/s5.in /tmp/s5.pipe
(
	CRASHWATCH_SPOOL_DIR=/tmp/s5 timeout 120 crashwatch run --memory-limit $LIMIT --oom-snapshot 50 -- grow \
		</tmp/s5.in >/tmp/s5.out 2>/tmp/s5.pipe
	echo $? >/tmp/s5.status
) &
exec 4>/tmp/s5.in
echo "up 400 36" >&4
while IFS= read -r line; do
	printf '%s\n' "$line" >>/tmp/s5.err
	case $line in *"snapshot of pid"*) echo >&4 ;; esac
done </tmp/s5.pipe
exec 4>&-
wait
emit s5 status "$(cat /tmp/s5.status)"
recorded s5
for stacks in /tmp/s5/reports/*/*stacks*; do
	[ -f "$stacks" ] && emit s5 stacks "$(tr -d '\n' <"$stacks")"
done

# 6. A sudden spike: spike allocates 320 MiB at once into a 256M limit
# under --oom-snapshot 70. crashwatch sets memory.high of the child's
# cgroup at the point: the kernel throttles the allocator there and wakes
# crashwatch (memory.events), which takes the snapshot before the OOM kill.
# (A larger limit than the others': past a small memory.high, one huge
# page's overshoot costs the allocator a sleep of up to 2 s, which the stop
# for the snapshot waits out; README.md here.)
cw s6 0 "" run --memory-limit 256M --oom-snapshot 70 -- spike 320
for stacks in /tmp/s6/reports/*/*stacks*; do
	[ -f "$stacks" ] && emit s6 stacks "$(tr -d '\n' <"$stacks")"
done
# ... and one that stays under the limit (200 MiB) and lives on: memory.high
# is given back once the snapshot is taken, read while the child still runs.
mkdir -p /tmp/s6hold
: >/tmp/s6hold.err
mkfifo /tmp/s6hold.in /tmp/s6hold.pipe
(
	CRASHWATCH_LOG=crashwatch=debug CRASHWATCH_SPOOL_DIR=/tmp/s6hold timeout 120 crashwatch run \
		--memory-limit 256M --oom-snapshot 70 -- spike 200 4 hold </tmp/s6hold.in >/tmp/s6hold.out 2>/tmp/s6hold.pipe
	echo $? >/tmp/s6hold.status
) &
exec 4>/tmp/s6hold.in
while IFS= read -r line; do
	printf '%s\n' "$line" >>/tmp/s6hold.err
	case $line in
	*"given back its value"*)
		emit s6hold high_after "$(cat $CG/crashwatch-*-0/memory.high)"
		exec 4>&-
		;;
	esac
done </tmp/s6hold.pipe
exec 4>&-
wait
emit s6hold status "$(cat /tmp/s6hold.status)"
recorded s6hold

# 7. --oom-snapshot in a cgroup crashwatch did not make (systemd's
# MemoryMax=, no --memory-limit): its memory.high is not crashwatch's to
# change, so the sampler polls, and says so in its debug log.
mkdir $CG/svc2
echo 256M >$CG/svc2/memory.max
CRASHWATCH_LOG=crashwatch=debug CRASHWATCH_SPOOL_DIR=/tmp/s7 timeout 120 sh -c 'echo $$ >"$0/cgroup.procs" && exec crashwatch "$@"' \
	$CG/svc2 run --oom-snapshot 70 -- spike 100 </dev/null >/tmp/s7.out 2>/tmp/s7.err
emit s7 status $?
recorded s7
emit s7 high_after "$(cat $CG/svc2/memory.high)"
cw s7doctor 0 svc2 doctor
rmdir $CG/svc2
emit s7 rmdir $?

emit end cgroups "$(cgroups_below $CG)"
emit end done ok
reboot -f
