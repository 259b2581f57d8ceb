//! The values that pass from step to step, type-erased: small ones held inline (no
//! allocation per step), others on the heap.

use std::any::Any;
use std::sync::Arc;

use smallbox::SmallBox;
use smallbox::space::S4;

/// A value held by a [`Datum`]: an `Option<T>`, so that it can be moved out through a
/// `&mut` and leave `None` behind. It is read and taken as a `dyn Any` (one virtual call
/// to check its type, then typed code).
pub(crate) trait Held: Any + Send + Sync {
    /// Moves the value to the heap, to be shared.
    fn share(&mut self) -> Option<Arc<dyn Any + Send + Sync>>;
}

impl<T: Any + Send + Sync> Held for Option<T> {
    fn share(&mut self) -> Option<Arc<dyn Any + Send + Sync>> {
        self.take()
            .map(|v| Arc::new(v) as Arc<dyn Any + Send + Sync>)
    }
}

/// A value passed between steps.
pub(crate) enum Datum {
    /// This datum's own value: inline when it takes at most 32 bytes (a number, a
    /// `String`, a small struct), else boxed.
    Own(SmallBox<dyn Held, S4>),
    /// A value shared with others (an item of a `ForEachInput`, a `goto` result).
    Shared(Arc<dyn Any + Send + Sync>),
}

impl Datum {
    /// Holds `value`.
    #[inline]
    pub(crate) fn new<T: Any + Send + Sync>(value: T) -> Self {
        // `smallbox!` is the crate's way of making an unsized `SmallBox` on stable Rust:
        // the pointer it hands to `SmallBox::new_unchecked` is the address of the value it
        // moves in, and only the pointer's metadata (the `Held` vtable of `Option<T>`) is
        // used, which is exactly what that function requires.
        Datum::Own(smallbox::smallbox!(Some(value)))
    }

    /// A datum for a value that is shared.
    pub(crate) fn shared(value: Arc<dyn Any + Send + Sync>) -> Self {
        Datum::Shared(value)
    }

    /// The value, if it is a `T` (and was not taken).
    #[inline]
    pub(crate) fn downcast_ref<T: Any>(&self) -> Option<&T> {
        match self {
            Datum::Own(held) => {
                let held: &dyn Any = &**held;
                held.downcast_ref::<Option<T>>()?.as_ref()
            }
            Datum::Shared(value) => value.downcast_ref::<T>(),
        }
    }

    /// The value if it is a `T`: moved out when it is this datum's own (which is then
    /// empty), cloned when it is shared.
    #[inline]
    pub(crate) fn take<T: Any + Clone>(&mut self) -> Option<T> {
        match self {
            Datum::Own(held) => {
                let held: &mut dyn Any = &mut **held;
                held.downcast_mut::<Option<T>>()?.take()
            }
            Datum::Shared(value) => value.downcast_ref::<T>().cloned(),
        }
    }

    /// The value if it is a `T`, moved out unless something else shares it.
    #[inline]
    pub(crate) fn into_value<T: Any + Clone + Send + Sync>(mut self) -> Option<T> {
        match self {
            Datum::Own(_) => self.take(),
            Datum::Shared(value) => value.downcast::<T>().ok().map(Arc::unwrap_or_clone),
        }
    }

    /// The value on the heap, to be shared.
    pub(crate) fn into_shared(self) -> Option<Arc<dyn Any + Send + Sync>> {
        match self {
            Datum::Own(mut held) => held.share(),
            Datum::Shared(value) => Some(value),
        }
    }
}

/// A step's input: lent (cloned out by the step, as something else still needs it), or
/// given (moved out, leaving the datum empty).
pub(crate) enum Input<'a> {
    Lent(&'a Datum),
    Given(&'a mut Datum),
}

impl Input<'_> {
    /// The value for the step, if it is an `I`.
    #[inline]
    pub(crate) fn get<I: Any + Clone>(self) -> Option<I> {
        match self {
            Input::Lent(d) => d.downcast_ref::<I>().cloned(),
            Input::Given(d) => d.take::<I>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Big([u64; 16]);

    #[test]
    fn small_and_large_values_are_read_taken_and_shared() {
        let mut small = Datum::new(String::from("abc"));
        assert!(matches!(&small, Datum::Own(b) if !b.is_heap()));
        assert_eq!(
            small.downcast_ref::<String>().map(String::as_str),
            Some("abc")
        );
        assert_eq!(small.downcast_ref::<u64>(), None);
        assert_eq!(small.take::<u64>(), None, "a wrong type takes nothing");
        assert_eq!(small.take::<String>().as_deref(), Some("abc"));
        assert_eq!(small.take::<String>(), None, "taken once");
        assert!(small.downcast_ref::<String>().is_none());

        let big = Datum::new(Big([7; 16]));
        assert!(matches!(&big, Datum::Own(b) if b.is_heap()));
        assert_eq!(big.downcast_ref::<Big>(), Some(&Big([7; 16])));
        let shared = big.into_shared().expect("a value");
        let mut again = Datum::shared(shared.clone());
        assert_eq!(
            again.take::<Big>(),
            Some(Big([7; 16])),
            "a shared value is cloned"
        );
        assert!(again.downcast_ref::<Big>().is_some(), "and stays");
        drop(shared);
        assert_eq!(again.into_value::<Big>(), Some(Big([7; 16])));
    }

    #[test]
    fn values_are_dropped_once() {
        let counter = Arc::new(());
        let d = Datum::new(counter.clone());
        assert_eq!(Arc::strong_count(&counter), 2);
        drop(d);
        assert_eq!(Arc::strong_count(&counter), 1);
        let mut d = Datum::new(counter.clone());
        let taken = d.take::<Arc<()>>();
        drop(d);
        assert_eq!(Arc::strong_count(&counter), 2, "the taken value lives on");
        drop(taken);
        assert_eq!(Arc::strong_count(&counter), 1);
    }
}
