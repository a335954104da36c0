//! A bump allocator for hooks on wasm.
//!
//! Every hook call gets a fresh instance that is thrown away afterwards, so
//! memory never needs to be reused: allocation is a pointer bump, `dealloc` is
//! a no-op (except for the most recent allocation, so growing the last `Vec`
//! or `String` happens in place), and linear memory grows in whole pages when
//! needed. This makes a typical hook call markedly cheaper than with the
//! default allocator. The host's memory cap still bounds the total.
//!
//! Allocation starts in a static arena and grows linear memory only once the
//! arena is used up. The arena is zero-initialised data (`.bss`): it adds no
//! bytes to the module, it raises the module's initial memory. A typical call
//! (a few KiB of event, commands and serde state) fits, so memory never grows.
//! That matters to the host more than to the guest: a call that grew memory
//! leaves the pooled memory slot larger than the module's initial size, and
//! the next instance in that slot must shrink it back with an `mprotect`,
//! which flushes the TLB on every core that runs the process.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
#[cfg(target_arch = "wasm32")]
use core::cell::UnsafeCell;

const PAGE: usize = 64 * 1024;

/// Bytes served from the static arena before linear memory grows.
pub const ARENA_BYTES: usize = 64 * 1024;

#[cfg(target_arch = "wasm32")]
#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: wasm32-unknown-unknown hooks are single-threaded.
#[cfg(target_arch = "wasm32")]
unsafe impl Sync for Arena {}

#[cfg(target_arch = "wasm32")]
static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));

pub struct BumpAlloc {
    next: Cell<usize>,
    end: Cell<usize>,
}

// SAFETY: wasm32-unknown-unknown hooks are single-threaded.
unsafe impl Sync for BumpAlloc {}

impl BumpAlloc {
    pub const fn new() -> Self {
        BumpAlloc {
            next: Cell::new(0),
            end: Cell::new(0),
        }
    }
}

impl Default for BumpAlloc {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl GlobalAlloc for BumpAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.end.get() == 0 {
            self.start_in_arena();
        }
        let align = layout.align();
        let start = (self.next.get() + align - 1) & !(align - 1);
        let Some(end) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if end > self.end.get() {
            return self.grow_and_alloc(layout);
        }
        self.next.set(end);
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Give back only the most recent allocation; everything else goes
        // with the instance.
        if ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_end = ptr as usize + layout.size();
        // The last allocation grows in place when there is room.
        if old_end == self.next.get() && ptr as usize + new_size <= self.end.get() {
            self.next.set(ptr as usize + new_size);
            return ptr;
        }
        // SAFETY: same contract as GlobalAlloc::realloc's default.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
            new
        }
    }
}

impl BumpAlloc {
    /// The first allocation of an instance starts in the static arena.
    #[cold]
    fn start_in_arena(&self) {
        #[cfg(target_arch = "wasm32")]
        {
            let start = ARENA.0.get() as usize;
            self.next.set(start);
            self.end.set(start + ARENA_BYTES);
        }
    }

    #[cold]
    fn grow_and_alloc(&self, layout: Layout) -> *mut u8 {
        let need = layout.size() + layout.align();
        let pages = need.div_ceil(PAGE).max(1);
        let previous = grow(pages);
        if previous == usize::MAX {
            return core::ptr::null_mut();
        }
        let region_start = previous * PAGE;
        // Continue the current region if the new pages are adjacent to it.
        if self.end.get() != region_start || self.next.get() == 0 {
            self.next.set(region_start);
        }
        self.end.set(region_start + pages * PAGE);
        let align = layout.align();
        let start = (self.next.get() + align - 1) & !(align - 1);
        self.next.set(start + layout.size());
        start as *mut u8
    }
}

#[cfg(target_arch = "wasm32")]
fn grow(pages: usize) -> usize {
    core::arch::wasm32::memory_grow(0, pages)
}

#[cfg(not(target_arch = "wasm32"))]
fn grow(_pages: usize) -> usize {
    usize::MAX
}
