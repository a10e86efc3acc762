//! Per-thread scratch buffers reused across calls, so hot loops allocate nothing once warm.

use std::cell::Cell;
use std::thread::LocalKey;

/// A thread-local scratch vector: declare with `thread_local!` and pass to [`with_buffer`].
pub type Scratch<T> = Cell<Vec<T>>;

/// Takes the thread's buffer out of `cell`, grown to at least `len` values, runs `f` on its
/// first `len` values and puts it back. A re-entrant call (the same thread stealing another
/// task that uses the same cell) finds the cell empty and works on a fresh buffer instead.
pub fn with_buffer<T: Clone + Default, R>(
    cell: &'static LocalKey<Scratch<T>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let mut v = cell.with(Cell::take);
    if v.len() < len {
        v.resize(len, T::default());
    }
    let r = f(&mut v[..len]);
    cell.with(|c| c.set(v));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static BUF: Scratch<f32> = const { Cell::new(Vec::new()) };
    }

    #[test]
    fn buffers_are_reused_and_reentrant() {
        let p = with_buffer(&BUF, 8, |b| {
            b[3] = 2.0;
            // Re-entered on the same thread: a separate buffer, not a double borrow.
            with_buffer(&BUF, 4, |inner| assert_eq!(inner, &[0.0; 4]));
            b.as_ptr() as usize
        });
        let q = with_buffer(&BUF, 6, |b| {
            assert_eq!(b[3], 2.0);
            b.as_ptr() as usize
        });
        assert_eq!(p, q);
    }
}
