//! Pinning bpf objects in bpffs, so that they outlive the process that made them: the one
//! use is a planned restart, where xvsd hands its attached links to its successor.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD, BPF_OBJ_PIN, bpf, owned_fd};
use crate::SyscallError;

/// `BPF_FS_MAGIC`, the `f_type` of a bpffs mount.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_link_info` up to the XDP and tcx parts of its union (both start with the
/// ifindex, at the union's 8-aligned offset), with room for the rest of the union.
#[repr(C)]
#[derive(Default)]
struct LinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    ifindex: u32,
    attach_type: u32,
    _rest: [u64; 6],
}

fn c_path(path: &Path) -> Result<CString, SyscallError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SyscallError {
        call: "bpf pin path",
        io_error: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })
}

/// Pins `fd` (a map, program or link) at `path` in a bpffs mount: the object lives on until
/// the file is removed and no fd holds it.
///
/// # Errors
/// `BPF_OBJ_PIN` fails: the path exists (EEXIST) or is not in bpffs (EPERM).
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> Result<(), SyscallError> {
    let path = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        file_flags: 0,
    };
    // SAFETY: ObjAttr is the BPF_OBJ_PIN layout; pathname points to a NUL-terminated string
    // that outlives the call.
    unsafe { bpf(BPF_OBJ_PIN, &mut attr, "bpf(BPF_OBJ_PIN)") }.map(drop)
}

/// Opens the object pinned at `path`.
///
/// # Errors
/// `BPF_OBJ_GET` fails: nothing is pinned there (ENOENT).
pub fn obj_get(path: &Path) -> Result<OwnedFd, SyscallError> {
    let path = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: path.as_ptr() as u64,
        ..ObjAttr::default()
    };
    // SAFETY: ObjAttr is the BPF_OBJ_GET layout; pathname points to a NUL-terminated string
    // that outlives the call.
    unsafe { bpf(BPF_OBJ_GET, &mut attr, "bpf(BPF_OBJ_GET)") }.map(owned_fd)
}

/// The interface an XDP or tcx link is attached to (0 once the interface is gone) and the
/// link's attach type (tcx only; 0 for XDP).
///
/// # Errors
/// `BPF_OBJ_GET_INFO_BY_FD` fails (`link` is no bpf link).
pub fn link_target(link: BorrowedFd<'_>) -> Result<(u32, u32), SyscallError> {
    let mut info = LinkInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: size_of::<LinkInfo>() as u32,
        info: (&raw mut info) as u64,
    };
    // SAFETY: InfoAttr is the BPF_OBJ_GET_INFO_BY_FD layout; info points to info_len writable
    // bytes that outlive the call (the kernel writes at most info_len).
    unsafe {
        bpf(
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr,
            "bpf(BPF_OBJ_GET_INFO_BY_FD)",
        )
    }?;
    Ok((info.ifindex, info.attach_type))
}

/// Makes sure `dir` is a bpffs mount, mounting one there (mode 0700) if it is not.
///
/// # Errors
/// `statfs`, `mkdir` or `mount` fails.
pub fn ensure_bpffs(dir: &Path) -> Result<(), SyscallError> {
    std::fs::create_dir_all(dir).map_err(|io_error| SyscallError {
        call: "mkdir bpffs",
        io_error,
    })?;
    let path = c_path(dir)?;
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated, stat is a valid out-pointer; both outlive the call.
    crate::cvt(unsafe { libc::statfs(path.as_ptr(), &mut stat) }, "statfs")?;
    if stat.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    crate::cvt(
        unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                path.as_ptr(),
                c"bpf".as_ptr(),
                0,
                c"mode=0700".as_ptr().cast(),
            )
        },
        "mount bpffs",
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::{Map, MapType};

    #[test]
    fn a_pinned_map_is_the_same_map_when_opened_again() {
        let root = Path::new("/sys/fs/bpf");
        let Ok(map) = Map::create(MapType::Array, 4, 4, 1, 0, "xvs_pin_test") else {
            eprintln!("SKIPPED a_pinned_map...: needs CAP_BPF");
            return;
        };
        if ensure_bpffs(root).is_err() {
            eprintln!("SKIPPED a_pinned_map...: cannot mount bpffs");
            return;
        }
        let dir = root.join(format!("xvs-pin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("map");
        map.update(&0u32.to_ne_bytes(), &7u32.to_ne_bytes(), 0)
            .unwrap();
        obj_pin(map.as_fd(), &path).expect("pin");
        assert!(obj_pin(map.as_fd(), &path).is_err(), "a path pins once");
        drop(map);
        let fd = obj_get(&path).expect("the pin holds the map after its last fd closed");
        std::fs::remove_file(&path).unwrap();
        assert!(obj_get(&path).is_err(), "unpinned");
        std::fs::remove_dir(&dir).unwrap();
        drop(fd);
    }
}
