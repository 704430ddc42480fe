//! The global allocator of every generated binary: mimalloc, called the
//! way the standard library calls the system allocator.
//!
//! The `mimalloc` crate sends every allocation through mimalloc's aligned
//! entry points, whose first step is to look for a block that happens to
//! be aligned; a JSON service allocates about 160 small blocks a request
//! and nearly all of them ask for no more than word alignment, which every
//! mimalloc block has (blocks are multiples of 8 bytes from 8-aligned
//! page starts). Those go to the plain entry points; larger alignments
//! (tokio's cache-padded cells) keep the aligned ones.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment of every block mimalloc hands out.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc as the global allocator (see the module documentation).
pub struct MiMalloc;

// SAFETY: mimalloc's entry points meet `GlobalAlloc`'s contract: they
// return null or a block of at least the size asked for, aligned to the
// alignment passed (the plain ones to `WORD`, used only when the layout
// asks no more), and `mi_free` and `mi_realloc*` accept any block they
// returned.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe { allocate(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe { allocate(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (the
        // caller's contract); the new block keeps the alignment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

/// A block for `layout` from `plain` when the layout asks no more than
/// word alignment, else from `aligned` (both mimalloc entry points, which
/// the inlined call resolves to direct calls).
#[inline(always)]
unsafe fn allocate(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: the caller passes mimalloc's matching entry points.
    unsafe {
        if layout.align() <= WORD {
            plain(layout.size()).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size class up to a page, at each alignment: the block is
    /// aligned, writable over its whole size, keeps its bytes through a
    /// realloc and is zeroed when asked.
    #[test]
    fn blocks_are_aligned_sized_and_kept() {
        for align in [1, 2, 4, 8, 16, 64, 4096] {
            for size in (1..=600).chain([4096, 70_000]) {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; every block is freed once.
                unsafe {
                    let p = MiMalloc.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xab, size);
                    let q = MiMalloc.realloc(p, layout, size * 2 + 1);
                    assert_eq!(q as usize % align, 0, "realloc size {size} align {align}");
                    assert!((0..size).all(|i| *q.add(i) == 0xab));
                    MiMalloc.dealloc(q, Layout::from_size_align(size * 2 + 1, align).unwrap());
                    let z = MiMalloc.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    MiMalloc.dealloc(z, layout);
                }
            }
        }
    }
}
