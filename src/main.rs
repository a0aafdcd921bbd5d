//! The `connector-runtime` binary: parses the command line and runs the subcommand.

use clap::Parser;

/// Many small, short-lived allocations per run on several worker threads: mimalloc keeps
/// them thread-local (see the note in Cargo.toml).
#[global_allocator]
static GLOBAL: Mimalloc = Mimalloc;

/// mimalloc as the global allocator, asking for an alignment only when the layout needs
/// more than mimalloc gives every block (8 bytes: block sizes are multiples of the word).
/// `mimalloc::MiMalloc` calls `mi_malloc_aligned` for every layout, whose mimalloc v3 fast
/// path misses whenever the free block at hand is not aligned to the size it rounds to:
/// about 20 allocations per run went through its over-allocating slow path (callgrind,
/// scenario A: ~5,000 instructions per run). A 16-byte alignment (hashbrown's tables: every
/// `HeaderMap`) is asked for as a plain block of a multiple of 16 bytes, which mimalloc
/// places 16-aligned (its size classes above 64 bytes are multiples of 16 and its pages
/// start 16-aligned); the result is checked, and the aligned call is the fallback. Through
/// `mi_malloc_aligned` those were 5 over-allocations per run (each `size + 15` bytes) through
/// its slow path: ~400 instructions per run (callgrind, scenario A: 141,023 -> 140,611).
struct Mimalloc;

/// The alignment every mimalloc block has.
const MI_WORD_ALIGN: usize = std::mem::size_of::<usize>();

/// The alignment mimalloc gives every block whose size is a multiple of it.
const MI_SIZE_ALIGN: usize = 16;

/// A block of `size` bytes aligned to `MI_SIZE_ALIGN`, through the plain call where that
/// gives one (see [`Mimalloc`]); `alloc` is `mi_malloc` or `mi_zalloc`, `aligned` its aligned
/// counterpart.
///
/// # Safety
/// As `GlobalAlloc::alloc`.
#[inline]
unsafe fn alloc_size_aligned(
    size: usize,
    alloc: unsafe extern "C" fn(usize) -> *mut std::ffi::c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut std::ffi::c_void,
) -> *mut u8 {
    let rounded = size.next_multiple_of(MI_SIZE_ALIGN);
    let block = alloc(rounded);
    if block as usize % MI_SIZE_ALIGN == 0 {
        return block.cast();
    }
    libmimalloc_sys::mi_free(block);
    aligned(size, MI_SIZE_ALIGN).cast()
}

// SAFETY: each method forwards to mimalloc, whose plain and aligned functions return blocks
// of at least the requested size aligned to `MI_WORD_ALIGN` or to the requested alignment,
// and `mi_free` / `mi_realloc*` accept a block from any of them.
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.align() <= MI_WORD_ALIGN {
            libmimalloc_sys::mi_malloc(layout.size()).cast()
        } else if layout.align() == MI_SIZE_ALIGN {
            alloc_size_aligned(
                layout.size(),
                libmimalloc_sys::mi_malloc,
                libmimalloc_sys::mi_malloc_aligned,
            )
        } else {
            libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.align() <= MI_WORD_ALIGN {
            libmimalloc_sys::mi_zalloc(layout.size()).cast()
        } else if layout.align() == MI_SIZE_ALIGN {
            alloc_size_aligned(
                layout.size(),
                libmimalloc_sys::mi_zalloc,
                libmimalloc_sys::mi_zalloc_aligned,
            )
        } else {
            libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        libmimalloc_sys::mi_free(ptr.cast());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MI_WORD_ALIGN {
            libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            libmimalloc_sys::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

/// mimalloc's option number of `purge_delay` (mimalloc.h, `mi_option_purge_delay`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Turns transparent huge pages off for this process unless `MIMALLOC_ALLOW_THP` says
/// otherwise. mimalloc asks for huge pages on its arenas (`madvise`), and the kernel zeroes
/// each 2 MiB page on its first touch: building a 10,000-connector registry spent ~30% of its
/// time in those page faults. Measured with `bench/large_registry.py` (two runs each): ready
/// 0.92-1.05 s -> 0.57-0.64 s, reload 2.12-2.22 s -> 1.49-1.77 s, RSS 83.4 -> 73.5 MiB;
/// scenario A's CPU per run unchanged within noise (medians 57.7 vs 57.8 us over three runs
/// each) and its peak RSS 29.4 -> 17.3 MiB.
fn disable_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: `PR_SET_THP_DISABLE` takes integer arguments and only sets a flag on the
    // process's memory map; a kernel without it returns an error, which changes nothing.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

fn main() {
    // Freed pages go back to the OS after 1 s instead of 10 ms: a busy server reuses them at
    // once, and re-faulting them was ~14% of CPU per run at 1,000 concurrent runs.
    // SAFETY: called before any other thread exists; the option is a plain integer.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
    disable_transparent_huge_pages();
    let cli = connector_runtime::commands::Cli::parse();
    // Templates render on the command's thread and on the server's worker threads, which
    // actix spawns with the standard library's default stack unless `RUST_MIN_STACK` says
    // otherwise: give them the stack their fuel can use (see `render_stack_bytes`).
    let stack = connector_runtime::template::engine::render_stack_bytes(cli.template_fuel());
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("RUST_MIN_STACK", stack.to_string()) };
    }
    let command = std::thread::Builder::new()
        .name("main".into())
        .stack_size(stack)
        .spawn(move || connector_runtime::commands::run(cli))
        .expect("the command thread starts");
    std::process::exit(command.join().unwrap_or(101));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    /// Every size a 16-aligned layout comes in, up to past a medium page's blocks, gets a
    /// 16-aligned block it can fill (zeroed when asked), from the plain path or the fallback;
    /// and a grown block keeps its alignment and contents.
    #[test]
    fn sixteen_byte_alignment_holds_for_every_size() {
        let sizes = (1..=1100).chain([4095, 4096, 7000, 16 << 10, 70_000, 1 << 20]);
        for size in sizes {
            let layout = Layout::from_size_align(size, MI_SIZE_ALIGN).unwrap();
            // SAFETY: `layout` has a non-zero size; each block is freed with its layout.
            unsafe {
                let zeroed = Mimalloc.alloc_zeroed(layout);
                assert_eq!(zeroed as usize % MI_SIZE_ALIGN, 0, "zeroed, size {size}");
                assert!(std::slice::from_raw_parts(zeroed, size)
                    .iter()
                    .all(|&b| b == 0));
                Mimalloc.dealloc(zeroed, layout);
                let block = Mimalloc.alloc(layout);
                assert_eq!(block as usize % MI_SIZE_ALIGN, 0, "size {size}");
                block.write_bytes(0xa5, size);
                let grown = Mimalloc.realloc(block, layout, size * 3);
                assert_eq!(grown as usize % MI_SIZE_ALIGN, 0, "grown from {size}");
                assert!(std::slice::from_raw_parts(grown, size)
                    .iter()
                    .all(|&b| b == 0xa5));
                Mimalloc.dealloc(
                    grown,
                    Layout::from_size_align(size * 3, MI_SIZE_ALIGN).unwrap(),
                );
            }
        }
    }
}
