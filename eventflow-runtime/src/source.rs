//! Where a registration was written.

/// Where a registration was written: the module, file and line of the annotated item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLocation {
    /// `module_path!()` of the item.
    pub module: &'static str,
    /// `file!()` of the item.
    pub file: &'static str,
    /// `line!()` of the item.
    pub line: u32,
}

impl SourceLocation {
    /// A location (what the macros' generated code calls).
    pub const fn new(module: &'static str, file: &'static str, line: u32) -> Self {
        SourceLocation { module, file, line }
    }
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}
