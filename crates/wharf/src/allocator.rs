//! The `wharf` binary's memory allocator: mimalloc, with its arenas committed as
//! they are used.
//!
//! Why not the system allocator: with 10,000 agents the server spent about a sixth
//! of its CPU in glibc's malloc and free (much of it merging freed chunks), and a
//! quarter less CPU in all with mimalloc (BENCHMARKS.md). Why the setting:
//! mimalloc commits a whole arena up front by default, which raised the idle
//! agent's RSS from 9 to 19 MiB; committed on demand it stays at about 10 MiB. The
//! setting must be in place before mimalloc makes its first arena, that is before
//! the first allocation, which happens before `main`: so the allocator sets it on
//! its first call.

use std::alloc::{GlobalAlloc, Layout};
#[cfg(test)]
use std::os::raw::c_long;
use std::sync::Once;

/// `mi_option_arena_eager_commit` in mimalloc v3's `mimalloc.h`, the version the
/// pinned `libmimalloc-sys` builds (it exports no name for this option).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

static CONFIGURE: Once = Once::new();

/// mimalloc, set up on first use.
pub struct Allocator;

fn configure() {
    CONFIGURE.call_once(|| {
        // SAFETY: `mi_option_set` only records the option's value; mimalloc
        // documents it as callable at any time, before its own initialisation
        // too, and it allocates nothing through this allocator.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0)
        };
    });
}

/// Whether mimalloc commits arenas up front (1 or 2) or as they are used (0).
#[cfg(test)]
fn arena_eager_commit() -> c_long {
    // SAFETY: reading an option has no precondition.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT)
    }
}

// SAFETY: every call is passed on unchanged to mimalloc's own `GlobalAlloc`, which
// upholds the contract; `configure` allocates nothing.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        configure();
        mimalloc::MiMalloc.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        configure();
        mimalloc::MiMalloc.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        mimalloc::MiMalloc.dealloc(ptr, layout);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        mimalloc::MiMalloc.realloc(ptr, layout, new_size)
    }
}

#[cfg(test)]
mod tests {
    /// The test harness runs on the binary's allocator too, so the option was set
    /// by its first allocation, long before this test (mimalloc's own default is 2:
    /// up front wherever the OS overcommits, as Linux does).
    #[test]
    fn the_first_allocation_made_arenas_commit_as_they_are_used() {
        let allocated = vec![1u8; 1 << 20];
        assert_eq!(allocated.len(), 1 << 20);
        assert_eq!(super::arena_eager_commit(), 0);
    }
}
