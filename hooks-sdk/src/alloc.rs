//! A bump allocator for hooks on wasm.
//!
//! Every hook call gets a fresh instance that is thrown away afterwards, so
//! memory never needs to be reused: allocation is a pointer bump, `dealloc` is
//! a no-op (except for the most recent allocation, so growing the last `Vec`
//! or `String` happens in place), and linear memory grows in whole pages when
//! needed. This makes a typical hook call markedly cheaper than with the
//! default allocator. The host's memory cap still bounds the total.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;

const PAGE: usize = 64 * 1024;

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
        let align = layout.align();
        let start = (self.next.get() + align - 1) & !(align - 1);
        let Some(end) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if self.next.get() == 0 || end > self.end.get() {
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
