//! What a run carries from step to step.

use crate::pipeline::datum::Datum;

/// What the next step takes, and the run's output so far. A step gets a clone of `data`,
/// so that it is still here for a retry, a failure branch, or a `->` step after; or, when
/// nothing reads it after the step (`Node::give_input`), the value itself.
pub(crate) struct Carry {
    pub(crate) data: Datum,
    /// The last successful step's output, unless that is `data` itself (piped on, so that
    /// there is no second reference to count).
    pub(crate) last: Option<Datum>,
    pub(crate) data_is_last: bool,
}

impl Carry {
    /// A successful step's output: the next step's input when `piped`, else kept as the
    /// run's output while the next step takes the same input.
    #[inline]
    pub(crate) fn keep(&mut self, output: Datum, piped: bool) {
        if piped {
            self.data = output;
            self.data_is_last = true;
            self.last = None;
        } else {
            self.last = Some(output);
            self.data_is_last = false;
        }
    }

    /// A goto: the next step takes `input`.
    pub(crate) fn switch(&mut self, input: Datum) {
        let before = std::mem::replace(&mut self.data, input);
        if std::mem::take(&mut self.data_is_last) {
            self.last = Some(before);
        }
    }

    /// The run's output.
    #[inline]
    pub(crate) fn output(self) -> Option<Datum> {
        if self.data_is_last {
            Some(self.data)
        } else {
            self.last
        }
    }
}
