//! `pdf.text`'s reading: pdf-extract's plain-text output, page by page,
//! with the reader's panics on damaged files turned into errors.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use pdf_extract::{ConvertToFmt, MediaBox, OutputDev, OutputError, PlainTextOutput, Transform};

use super::text_error;
use crate::core::error::RunError;

/// The text of a PDF file's pages, or why there is none.
pub(super) fn extract(data: &[u8]) -> Result<String, RunError> {
    if data.is_empty() {
        return Err(text_error("the file is empty"));
    }
    // Readers accept the header anywhere in the first 1,024 bytes.
    let head = &data[..data.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(text_error("not a PDF file (no %PDF- header)"));
    }
    let pages = without_panics(|| read_pages(data))
        .ok_or_else(|| text_error("the PDF is damaged (its structure could not be read)"))??;
    Ok(pages.join("\n\u{c}\n"))
}

/// Every page's text, trimmed.
fn read_pages(data: &[u8]) -> Result<Vec<String>, RunError> {
    let mut doc = pdf_extract::Document::load_mem(data).map_err(|e| match e {
        pdf_extract::Error::Decryption(_) | pdf_extract::Error::InvalidPassword => encrypted(),
        e => text_error(format!("the PDF is damaged or not supported ({e})")),
    })?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(encrypted());
    }
    let mut pages = Pages::new();
    pdf_extract::output_doc(&doc, &mut pages)
        .map_err(|e| text_error(format!("cannot read the text ({e})")))?;
    Ok(pages.finish())
}

fn encrypted() -> RunError {
    text_error("the PDF is encrypted (it needs a password)")
}

thread_local! {
    /// Set while [`without_panics`] runs: its panics are not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// `f()`, or `None` if it panicked. The panic's message is kept out of the
/// logs (the caller reports a damaged file instead); other panics still
/// reach the previous hook.
fn without_panics<T>(f: impl FnOnce() -> T) -> Option<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.ok()
}

/// pdf-extract's plain-text output, split where each page begins.
struct Pages {
    buffer: Shared,
    /// Where in the buffer each page starts.
    starts: Vec<usize>,
    text: PlainTextOutput<Shared>,
}

/// The buffer the text output writes into, shared with [`Pages`], which
/// notes its length as each page begins.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<String>>);

impl std::fmt::Write for Shared {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.borrow_mut().push_str(s);
        Ok(())
    }
}

impl ConvertToFmt for Shared {
    type Writer = Shared;

    fn convert(self) -> Shared {
        self
    }
}

impl Pages {
    fn new() -> Pages {
        let buffer = Shared::default();
        Pages {
            text: PlainTextOutput::new(buffer.clone()),
            buffer,
            starts: Vec::new(),
        }
    }

    fn finish(self) -> Vec<String> {
        let text = self.buffer.0.borrow();
        let ends = self.starts.iter().skip(1).copied().chain([text.len()]);
        self.starts
            .iter()
            .zip(ends)
            .map(|(&start, end)| text.get(start..end).unwrap_or_default().trim().to_string())
            .collect()
    }
}

impl OutputDev for Pages {
    fn begin_page(
        &mut self,
        page: u32,
        media_box: &MediaBox,
        art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), OutputError> {
        self.starts.push(self.buffer.0.borrow().len());
        self.text.begin_page(page, media_box, art_box)
    }

    fn end_page(&mut self) -> Result<(), OutputError> {
        self.text.end_page()
    }

    fn output_character(
        &mut self,
        trm: &Transform,
        width: f64,
        spacing: f64,
        font_size: f64,
        char: &str,
    ) -> Result<(), OutputError> {
        self.text
            .output_character(trm, width, spacing, font_size, char)
    }

    fn begin_word(&mut self) -> Result<(), OutputError> {
        self.text.begin_word()
    }

    fn end_word(&mut self) -> Result<(), OutputError> {
        self.text.end_word()
    }

    fn end_line(&mut self) -> Result<(), OutputError> {
        self.text.end_line()
    }
}
