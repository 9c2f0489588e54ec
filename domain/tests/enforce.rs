//! Proves a rendered SeccompProfile is enforced, not only compiled: the filter libseccomp
//! builds from Palisade's OCI JSON is loaded into a forked child, whose syscalls are then
//! denied or allowed exactly as the profile says.

use std::os::fd::AsFd;

use palisade_domain::render::seccomp::{compile, render_chain};
use palisade_domain::seccomp::SeccompProfileSpec;
use serde_json::json;

/// The filter as raw BPF, exported in the parent so the child only makes syscalls.
fn bpf(spec: &SeccompProfileSpec) -> Vec<libc::sock_filter> {
    let ctx = compile(&render_chain(spec, &[])).expect("profile compiles");
    let file = tempfile_in_memory();
    ctx.filter.export_bpf(file.as_fd()).expect("export BPF");
    let bytes = std::fs::read(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file))).unwrap();
    assert_eq!(bytes.len() % std::mem::size_of::<libc::sock_filter>(), 0);
    bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

fn tempfile_in_memory() -> std::fs::File {
    use std::os::fd::FromRawFd;
    let fd = unsafe { libc::memfd_create(c"bpf".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create");
    unsafe { std::fs::File::from_raw_fd(fd) }
}

/// Runs `probe` in a forked child under the filter and returns what it exited with.
/// The child does nothing but syscalls (no allocation), so forking from a threaded test
/// binary is safe.
fn run_filtered(filter: &[libc::sock_filter], probe: fn() -> i32) -> i32 {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(200);
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const _ as usize,
                0,
                0,
            ) != 0
            {
                libc::_exit(201);
            }
            libc::_exit(probe());
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(libc::WIFEXITED(status), "child killed: status {status:#x}");
        libc::WEXITSTATUS(status)
    }
}

fn errno() -> i32 {
    unsafe { *libc::__errno_location() }
}

/// Exit code: 0 when the call succeeded, else its errno.
fn outcome(rc: libc::c_long) -> i32 {
    if rc < 0 { errno() } else { 0 }
}

fn profile() -> SeccompProfileSpec {
    serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
            // Deny getpgid(pid) when (pid & 0xf0) == 0x10: value is the mask, valueTwo the datum.
            {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
             "args": [{"index": 0, "value": 0xf0, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    }))
    .unwrap()
}

#[test]
fn a_denied_syscall_returns_the_profiles_errno() {
    let filter = bpf(&profile());
    assert_eq!(
        run_filtered(&filter, || outcome(unsafe { libc::syscall(libc::SYS_getppid) })),
        42
    );
}

#[test]
fn an_allowed_syscall_succeeds() {
    let filter = bpf(&profile());
    assert_eq!(
        run_filtered(&filter, || outcome(unsafe { libc::syscall(libc::SYS_getpid) })),
        0
    );
    // getpgid(0) means "my own group": allowed, since 0 & 0xf0 != 0x10.
    assert_eq!(
        run_filtered(&filter, || outcome(unsafe { libc::syscall(libc::SYS_getpgid, 0) })),
        0
    );
}

#[test]
fn masked_eq_uses_value_as_mask_and_value_two_as_datum() {
    let filter = bpf(&profile());
    // 0x7fffff13 & 0xf0 == 0x10: denied with the rule's errno.
    assert_eq!(
        run_filtered(&filter, || outcome(unsafe {
            libc::syscall(libc::SYS_getpgid, 0x7fff_ff13)
        })),
        77
    );
    // 0x7fffff23 & 0xf0 == 0x20: the rule does not match, so the kernel answers: no such
    // process (the value is above any pid_max).
    assert_eq!(
        run_filtered(&filter, || outcome(unsafe {
            libc::syscall(libc::SYS_getpgid, 0x7fff_ff23)
        })),
        libc::ESRCH
    );
}

#[test]
fn without_the_profile_the_same_calls_succeed() {
    // Guards the tests above: the errnos come from the filter, not from the calls themselves.
    let allow_all: SeccompProfileSpec = serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ALLOW"})).unwrap();
    let filter = bpf(&allow_all);
    assert_eq!(
        run_filtered(&filter, || outcome(unsafe { libc::syscall(libc::SYS_getppid) })),
        0
    );
    assert_eq!(
        run_filtered(&filter, || outcome(unsafe {
            libc::syscall(libc::SYS_getpgid, 0x7fff_ff13)
        })),
        libc::ESRCH
    );
}
