//! Where a step's future is made and polled: in place, inside the run's own (pinned)
//! state, so that the future is neither allocated nor copied after it is made.
//!
//! This is the one module of the crate with `unsafe` code of its own (`datum.rs` uses the
//! `smallbox!` macro, whose expansion holds an `unsafe` block; the comment there says why
//! that use is sound): a pinned place that may hold a future. Each `unsafe` block says why it is sound; the invariant they rest on is
//! **`full` is true exactly when `fut` holds an initialised future, and a future held there
//! is never moved, only polled in place and dropped in place.**
#![allow(unsafe_code)]

use std::marker::{PhantomData, PhantomPinned};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::future::Future;

/// A pinned place for one future at a time (the run's step futures; the slot knows
/// nothing of steps).
pub(crate) struct Slot<F: Future> {
    fut: MaybeUninit<F>,
    full: bool,
    // A future in the slot may point into itself: the slot must not move once pinned.
    _pinned: PhantomPinned,
}

/// The empty slot, lent to a step to make its future in ([`Vacant::fill`]).
pub(crate) struct Vacant<'a, F>(&'a mut MaybeUninit<F>, Invariant<'a>);

/// Proof that the [`Vacant`] slot of the same lifetime was filled: made only by
/// [`Vacant::fill`] (its field is private to this module), so a step cannot return one
/// without having put its future in the slot it was given.
pub(crate) struct Filled<'a>(Invariant<'a>);

/// Ties `'a` exactly (neither longer nor shorter), so that a `Filled` cannot stand for
/// another slot's.
type Invariant<'a> = PhantomData<fn(&'a ()) -> &'a ()>;

impl<'a, F> Vacant<'a, F> {
    /// Puts the step's future in the slot.
    #[inline(always)]
    pub(crate) fn fill(self, fut: F) -> Filled<'a> {
        // A plain write: nothing is dropped, so the future can be made in the slot itself.
        self.0.write(fut);
        Filled(PhantomData)
    }
}

impl<F: Future> Slot<F> {
    /// An empty slot.
    #[inline(always)]
    pub(crate) fn new() -> Self {
        // Written field by field: as one value (`Slot {fut: MaybeUninit::uninit(), .. }`)
        // the compiler zeroes all of `fut`'s bytes, which a run would pay for each time.
        let mut slot = MaybeUninit::<Slot<F>>::uninit();
        // SAFETY: `full` is written through a raw pointer (no reference to uninitialised
        // memory is made); `fut` is a `MaybeUninit`, valid uninitialised, and `_pinned` is
        // zero-sized. With `full` written, every field holds a valid value.
        unsafe {
            std::ptr::addr_of_mut!((*slot.as_mut_ptr()).full).write(false);
            slot.assume_init()
        }
    }

    /// Makes a future in the slot with `make` (the one there before, if any, is dropped
    /// first).
    #[inline(always)]
    pub(crate) fn fill_with(
        mut self: Pin<&mut Self>,
        make: impl for<'a> FnOnce(Vacant<'a, F>) -> Filled<'a>,
    ) {
        self.as_mut().clear();
        // SAFETY: nothing pinned is moved out of `this`: the slot is empty (just cleared),
        // so `fut` holds no future, and `Vacant` only lets `make` write a new one in place.
        let this = unsafe { self.get_unchecked_mut() };
        let _filled: Filled<'_> = make(Vacant(&mut this.fut, PhantomData));
        // `make` returned a `Filled` for this very slot, which only `Vacant::fill` makes:
        // the future is there. (Had `make` panicked, `full` would still be false, and a
        // future written before the panic would be leaked, never used: safe.)
        this.full = true;
    }

    /// Polls the future in the slot; `None` when the slot is empty.
    #[inline(always)]
    pub(crate) fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Option<Poll<F::Output>> {
        // SAFETY: only `fut` is reached through `this`, and it is not moved.
        let this = unsafe { self.get_unchecked_mut() };
        if !this.full {
            return None;
        }
        // SAFETY: `full`, so `fut` is initialised; the slot is pinned and the future in it
        // is only ever polled or dropped in place, so pinning it is sound.
        let fut = unsafe { Pin::new_unchecked(this.fut.assume_init_mut()) };
        Some(std::future::Future::poll(fut, cx))
    }

    /// Drops the future in the slot, if there is one.
    #[inline(always)]
    pub(crate) fn clear(self: Pin<&mut Self>) {
        // SAFETY: the future is dropped in place, as pinning requires, not moved.
        let this = unsafe { self.get_unchecked_mut() };
        this.drop_future();
    }

    fn drop_future(&mut self) {
        // `full` is cleared first: should the future's drop panic, it is not dropped again.
        if std::mem::replace(&mut self.full, false) {
            // SAFETY: `full` was true, so `fut` held an initialised future; it is dropped
            // once, in place, and `full` is already false.
            unsafe { self.fut.assume_init_drop() }
        }
    }
}

impl<F: Future> Drop for Slot<F> {
    fn drop(&mut self) {
        self.drop_future();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::step::StepFuture;
    use crate::pipeline::step::{Attempt, ExecutionContext};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct CountsDrops(Arc<AtomicUsize>);
    impl Drop for CountsDrops {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn ctx() -> ExecutionContext {
        ExecutionContext::new(None, "t".into(), 1)
    }

    #[test]
    fn a_future_is_polled_in_place_and_dropped_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut slot = Box::pin(Slot::<StepFuture>::new());
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(slot.as_mut().poll(&mut cx).is_none(), "empty");

        // A future that waits once, holding a value that counts its drops.
        let held = CountsDrops(drops.clone());
        slot.as_mut().fill_with(|v| {
            v.fill(StepFuture::from(async move {
                let _held = held;
                tokio::task::yield_now().await;
                (Attempt::Failure("done".into()), ctx())
            }))
        });
        assert!(matches!(slot.as_mut().poll(&mut cx), Some(Poll::Pending)));
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        match slot.as_mut().poll(&mut cx) {
            Some(Poll::Ready((Attempt::Failure(m), _))) => assert_eq!(m, "done"),
            _ => panic!("the future should have ended"),
        }
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        slot.as_mut().clear();
        assert!(slot.as_mut().poll(&mut cx).is_none(), "empty again");

        // Filled again while a future is there: the old one is dropped first; the last one
        // is dropped with the slot.
        let (a, b) = (CountsDrops(drops.clone()), CountsDrops(drops.clone()));
        slot.as_mut().fill_with(|v| {
            v.fill(StepFuture::from(async move {
                let _a = a;
                std::future::pending::<(Attempt, ExecutionContext)>().await
            }))
        });
        assert!(matches!(slot.as_mut().poll(&mut cx), Some(Poll::Pending)));
        slot.as_mut().fill_with(|v| {
            v.fill(StepFuture::from(async move {
                let _b = b;
                std::future::pending::<(Attempt, ExecutionContext)>().await
            }))
        });
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        drop(slot);
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_step_that_panics_while_making_its_future_leaves_the_slot_empty() {
        let mut slot = Box::pin(Slot::<StepFuture>::new());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            slot.as_mut().fill_with(|_v| panic!("no future"));
        }));
        assert!(r.is_err());
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(slot.as_mut().poll(&mut cx).is_none());
    }
}
