//! Scratch plans: each operation describes its scratch once, as a list of slots, and
//! both its `*_scratch_len` query and the carving of the caller's slice read that list.
//!
//! The idea is faer's `StackReq`/`MemStack`: a [`StackReq`] is a size in 4-byte slots
//! that composes with [`StackReq::all_of`] (side by side) and [`StackReq::any_of`]
//! (one after the other, reusing the same memory). An operation's layout is a
//! `const fn` returning an array of `StackReq`s; its size is the array's
//! [`StackReq::all_of`], and `MemStack::split` cuts the caller's slice into exactly
//! those pieces, so the two cannot drift. Index slots are handed out as `u32` slices
//! (`MemStack::u32s`; `f32` and `u32` have the same size and alignment, so the cast
//! is checked by `bytemuck`, no `unsafe`).

/// A scratch requirement, in 4-byte slots (`f32` or `u32`). Sizes saturate: an
/// impossible size is `usize::MAX`, which no slice can satisfy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StackReq(usize);

impl StackReq {
    /// No scratch.
    pub const EMPTY: Self = Self(0);

    /// `n` slots of `f32`.
    #[must_use]
    pub const fn f32s(n: usize) -> Self {
        Self(n)
    }

    /// `n` slots of `u32` (same size as `f32`).
    #[must_use]
    pub const fn u32s(n: usize) -> Self {
        Self(n)
    }

    /// `rows·cols` slots of `f32`, saturating.
    #[must_use]
    pub const fn mat(rows: usize, cols: usize) -> Self {
        Self(rows.saturating_mul(cols))
    }

    /// Both at once (side by side).
    #[must_use]
    pub const fn and(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// Either one (the same memory reused): the larger.
    #[must_use]
    pub const fn or(self, other: Self) -> Self {
        if self.0 >= other.0 { self } else { other }
    }

    /// All of `reqs` side by side.
    #[must_use]
    pub const fn all_of(reqs: &[Self]) -> Self {
        let mut acc = Self::EMPTY;
        let mut i = 0;
        while i < reqs.len() {
            acc = acc.and(reqs[i]);
            i += 1;
        }
        acc
    }

    /// Any one of `reqs` (the largest).
    #[must_use]
    pub const fn any_of(reqs: &[Self]) -> Self {
        let mut acc = Self::EMPTY;
        let mut i = 0;
        while i < reqs.len() {
            acc = acc.or(reqs[i]);
            i += 1;
        }
        acc
    }

    /// The number of slots.
    #[must_use]
    pub const fn len(self) -> usize {
        self.0
    }

    /// True if no slot is needed.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// A caller's scratch slice, handed out piece by piece.
#[derive(Debug)]
pub(crate) struct MemStack<'a> {
    buf: &'a mut [f32],
}

impl<'a> MemStack<'a> {
    /// The whole of `buf`.
    pub(crate) fn new(buf: &'a mut [f32]) -> Self {
        Self { buf }
    }

    /// Cut the front of the slice into the pieces of `layout`, in order; the rest of
    /// the slice stays in the stack.
    ///
    /// # Panics
    /// If the slice is shorter than `StackReq::all_of(&layout)`: every caller checks
    /// the length against the same layout first (see `check_plan`).
    pub(crate) fn split<const N: usize>(&mut self, layout: [StackReq; N]) -> [&'a mut [f32]; N] {
        core::array::from_fn(|i| self.f32s(layout[i]))
    }

    /// The next `req` slots as `f32`.
    pub(crate) fn f32s(&mut self, req: StackReq) -> &'a mut [f32] {
        let buf = core::mem::take(&mut self.buf);
        let (head, rest) = buf.split_at_mut(req.len());
        self.buf = rest;
        head
    }

    /// The next `req` slots as `u32`.
    pub(crate) fn u32s(&mut self, req: StackReq) -> &'a mut [u32] {
        bytemuck::cast_slice_mut(self.f32s(req))
    }

    /// Everything not handed out yet.
    #[cfg(test)]
    pub(crate) fn rest(self) -> &'a mut [f32] {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composes_and_saturates() {
        let a = StackReq::f32s(3).and(StackReq::u32s(4));
        assert_eq!(a.len(), 7);
        assert_eq!(StackReq::any_of(&[a, StackReq::mat(2, 5)]).len(), 10);
        assert_eq!(StackReq::all_of(&[a, StackReq::mat(2, 5)]).len(), 17);
        assert_eq!(StackReq::mat(usize::MAX, 2).len(), usize::MAX);
        assert_eq!(StackReq::f32s(usize::MAX).and(a).len(), usize::MAX);
        const C: usize = StackReq::all_of(&[StackReq::f32s(2), StackReq::f32s(3)]).len();
        assert_eq!(C, 5);
    }

    #[test]
    fn split_hands_out_the_layout() {
        let mut buf = [0.0f32; 12];
        let mut s = MemStack::new(&mut buf);
        let [a, b] = s.split([StackReq::f32s(2), StackReq::f32s(3)]);
        assert_eq!((a.len(), b.len()), (2, 3));
        let u = s.u32s(StackReq::u32s(4));
        u[3] = 7;
        assert_eq!(u.len(), 4);
        assert_eq!(s.rest().len(), 3);
        assert_eq!(buf[8].to_bits(), 7);
    }
}
