//! The handler outcomes of one delivery report: one outcome held inline (the common case,
//! one handler, without an allocation), more in a `Vec`.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::HandlerOutcome;

/// Every handler's outcome for one event, in handler order: a slice (it derefs to
/// `[HandlerOutcome]`) that holds a lone outcome without allocating.
///
/// ```
/// # use eventflow_runtime::*;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
/// let bus = EventBus::builder()
///     .handler(Handler::new("audit", "user.*", |_env, _ctx| async { Ok::<(), HandlerError>(()) }))
///     .build()
///     .await?;
/// let report = bus.dispatch_raw("user.created", serde_json::json!({})).await?;
/// assert_eq!(report.outcomes.len(), 1);
/// assert!(report.outcomes[0].succeeded());
/// for outcome in &report.outcomes {
///     assert_eq!(&*outcome.handler, "audit");
/// }
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct Outcomes(Repr);

#[derive(Default)]
enum Repr {
    #[default]
    Empty,
    One(HandlerOutcome),
    Many(Vec<HandlerOutcome>),
}

impl Outcomes {
    /// No outcomes.
    pub const fn new() -> Self {
        Outcomes(Repr::Empty)
    }

    /// Room for `n` outcomes (allocating only for more than one).
    pub fn with_capacity(n: usize) -> Self {
        if n > 1 {
            Outcomes(Repr::Many(Vec::with_capacity(n)))
        } else {
            Outcomes(Repr::Empty)
        }
    }

    /// Appends an outcome.
    pub fn push(&mut self, outcome: HandlerOutcome) {
        let at = self.len();
        self.insert(at, outcome);
    }

    /// Inserts an outcome at `index`, shifting those after it.
    ///
    /// # Panics
    ///
    /// When `index` is greater than the length, as `Vec::insert` does.
    pub fn insert(&mut self, index: usize, outcome: HandlerOutcome) {
        self.0 = match std::mem::take(&mut self.0) {
            Repr::Empty if index == 0 => Repr::One(outcome),
            Repr::One(first) => {
                let mut v = Vec::with_capacity(2);
                v.push(first);
                v.insert(index, outcome);
                Repr::Many(v)
            }
            Repr::Many(mut v) => {
                v.insert(index, outcome);
                Repr::Many(v)
            }
            Repr::Empty => panic!("insertion index (is {index}) should be <= len (is 0)"),
        };
    }

    /// The outcomes as a `Vec`.
    pub fn into_vec(self) -> Vec<HandlerOutcome> {
        match self.0 {
            Repr::Empty => Vec::new(),
            Repr::One(o) => vec![o],
            Repr::Many(v) => v,
        }
    }
}

impl Deref for Outcomes {
    type Target = [HandlerOutcome];

    fn deref(&self) -> &[HandlerOutcome] {
        match &self.0 {
            Repr::Empty => &[],
            Repr::One(o) => std::slice::from_ref(o),
            Repr::Many(v) => v,
        }
    }
}

impl DerefMut for Outcomes {
    fn deref_mut(&mut self) -> &mut [HandlerOutcome] {
        match &mut self.0 {
            Repr::Empty => &mut [],
            Repr::One(o) => std::slice::from_mut(o),
            Repr::Many(v) => v,
        }
    }
}

impl fmt::Debug for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<Vec<HandlerOutcome>> for Outcomes {
    fn from(v: Vec<HandlerOutcome>) -> Self {
        Outcomes(Repr::Many(v))
    }
}

impl FromIterator<HandlerOutcome> for Outcomes {
    fn from_iter<I: IntoIterator<Item = HandlerOutcome>>(iter: I) -> Self {
        let mut out = Outcomes::new();
        for o in iter {
            out.push(o);
        }
        out
    }
}

impl IntoIterator for Outcomes {
    type Item = HandlerOutcome;
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        IntoIter(match self.0 {
            Repr::Empty => IterRepr::One(None),
            Repr::One(o) => IterRepr::One(Some(o)),
            Repr::Many(v) => IterRepr::Many(v.into_iter()),
        })
    }
}

impl<'a> IntoIterator for &'a Outcomes {
    type Item = &'a HandlerOutcome;
    type IntoIter = std::slice::Iter<'a, HandlerOutcome>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The outcomes of a report, by value.
#[derive(Debug)]
pub struct IntoIter(IterRepr);

#[derive(Debug)]
enum IterRepr {
    One(Option<HandlerOutcome>),
    Many(std::vec::IntoIter<HandlerOutcome>),
}

impl Iterator for IntoIter {
    type Item = HandlerOutcome;

    fn next(&mut self) -> Option<HandlerOutcome> {
        match &mut self.0 {
            IterRepr::One(o) => o.take(),
            IterRepr::Many(v) => v.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.0 {
            IterRepr::One(o) => usize::from(o.is_some()),
            IterRepr::Many(v) => v.len(),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for IntoIter {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::OutcomeStatus;

    fn outcome(name: &str) -> HandlerOutcome {
        HandlerOutcome {
            handler: name.into(),
            attempts: 1,
            status: OutcomeStatus::Succeeded,
            value: None,
        }
    }

    fn names(o: &Outcomes) -> Vec<&str> {
        o.iter().map(|o| &*o.handler).collect()
    }

    #[test]
    fn keeps_order_through_push_and_insert() {
        let mut o = Outcomes::with_capacity(1);
        assert!(o.is_empty());
        o.push(outcome("b"));
        assert_eq!(names(&o), ["b"]);
        o.insert(0, outcome("a"));
        o.push(outcome("d"));
        o.insert(2, outcome("c"));
        assert_eq!(names(&o), ["a", "b", "c", "d"]);
        let owned: Vec<String> = o.into_iter().map(|o| o.handler.to_string()).collect();
        assert_eq!(owned, ["a", "b", "c", "d"]);
    }

    #[test]
    fn one_outcome_iterates_once() {
        let o: Outcomes = std::iter::once(outcome("only")).collect();
        assert_eq!(o.len(), 1);
        let mut it = o.into_iter();
        assert_eq!(it.len(), 1);
        assert_eq!(
            it.next().map(|o| o.handler.to_string()).as_deref(),
            Some("only")
        );
        assert!(it.next().is_none());
        assert_eq!(Outcomes::new().into_vec().len(), 0);
    }

    #[test]
    #[should_panic(expected = "insertion index")]
    fn insert_past_the_end_panics_like_a_vec() {
        Outcomes::new().insert(1, outcome("x"));
    }
}
