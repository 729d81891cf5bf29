//! The allocator setting of the warm insert benchmarks (`insert-warm`).
//!
//! By default glibc's malloc serves large blocks with `mmap` and unmaps them
//! when they are freed, gives the top of its heaps back to the kernel, and
//! gives threads their own arenas (whose heaps cannot hold a block larger
//! than 64 MiB). A store dropped after one run therefore leaves nothing
//! behind for the next: the next store's large blocks are fresh pages, and
//! every page costs a fault when it is first written. [`keep_freed_memory`]
//! turns all three off, so that the memory one run wrote and freed is what
//! the next run gets back.

/// Makes the process's allocator keep every byte it frees for reuse: no
/// `mmap` for large blocks (they come from the heap like the rest), no
/// trimming of the heap, and one arena for every thread (each thread still
/// has its own cache of small blocks). Call it first thing in `main`,
/// before any thread exists.
///
/// Outside glibc it only says that it cannot, and the warm figures then
/// include whatever page faults that allocator takes.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets malloc's tuning parameters, under
        // malloc's own lock, from plain integers; it touches no memory of
        // ours, and every value here is one its manual documents.
        let set = |param, value| unsafe { libc::mallopt(param, value) } == 1;
        assert!(
            set(libc::M_MMAP_MAX, 0)
                && set(libc::M_TRIM_THRESHOLD, -1)
                && set(libc::M_ARENA_MAX, 1),
            "glibc refused an allocator setting of the warm benchmarks"
        );
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    eprintln!(
        "warning: the allocator is not glibc's, so it cannot be told to keep freed memory; \
         the warm figures include whatever page faults it takes"
    );
}
