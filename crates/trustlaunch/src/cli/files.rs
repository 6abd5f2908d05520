//! Reading whole input files fast.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The contents of `path`. The buffer's pages are made resident in one call before the
/// read: filled by read(2) alone, a 1 MiB buffer takes 256 page faults, which cost more
/// than reading the file (a whole-process `secureboot verify` reads 1.6 MB).
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let len = usize::try_from(f.metadata()?.len()).unwrap_or(0);
    // One byte more than the size, so that a file that did not grow is read without the
    // buffer being reallocated.
    let mut buf = Vec::with_capacity(len.saturating_add(1));
    populate(&mut buf);
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Fault in the whole pages of `buf`'s spare capacity (MADV_POPULATE_WRITE, Linux 5.14+;
/// on older kernels the call fails and the pages fault in as they are written).
fn populate(buf: &mut Vec<u8>) {
    const PAGE: usize = 4096;
    let spare = buf.spare_capacity_mut();
    if spare.len() < 16 * PAGE {
        return;
    }
    let start = spare.as_mut_ptr() as usize;
    let first = start.next_multiple_of(PAGE);
    let end = (start + spare.len()) / PAGE * PAGE;
    if end > first {
        // SAFETY: the range lies inside this Vec's own allocation, which outlives the call;
        // MADV_POPULATE_WRITE only faults its pages in (zero-filled anonymous memory) and
        // changes no contents.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                end - first,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_small_large_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [0usize, 5, 70_000, 1_048_577] {
            let p = dir.path().join(format!("f{len}"));
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&p, &data).expect("write");
            assert_eq!(super::read(&p).expect("read"), data, "{len} bytes");
        }
        assert!(super::read(&dir.path().join("missing")).is_err());
    }
}
