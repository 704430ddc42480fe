//! The report's layout: text measured and wrapped with DejaVu Sans's
//! metrics, then drawn page by page into content streams (see the parent
//! module for the choices).

use std::collections::HashMap;

use pdf_writer::types::TextRenderingMode;
use pdf_writer::{Content, Name, Str};
use sha2::{Digest, Sha256};

use super::Report;
use crate::core::error::RunError;

/// A4 portrait, in points.
const A4: (f32, f32) = (595.28, 841.89);
/// 15 mm on every side; the footer sits in the bottom one.
const MARGIN: f32 = 42.5;
const TITLE_SIZE: f32 = 16.0;
const TEXT_SIZE: f32 = 10.0;
const CELL_SIZE: f32 = 8.0;
const FOOTER_SIZE: f32 = 8.0;
/// Line height, as a multiple of the font size.
const LINE: f32 = 1.25;
/// Space between a cell's edges and its text.
const PAD: f32 = 3.0;
const MAX_CELL_LINES: usize = 6;
const MAX_HEADER_LINES: usize = 3;
/// A column's natural width is capped at this share of the table's.
const MAX_COLUMN_SHARE: f32 = 0.4;
/// Columns that need more than this each, together wider than a portrait
/// page, put the table on a landscape page.
const COMFORTABLE_COLUMN: f32 = 80.0;
/// The narrowest a column starts (before scaling to the table's width).
const MIN_COLUMN: f32 = 24.0;
/// The header row's background.
const HEADER_GRAY: f32 = 0.85;
/// Every other row's background.
const STRIPE_GRAY: f32 = 0.95;
/// The font's resource name in every page.
pub(super) const FONT: Name<'static> = Name(b"F1");

/// A report laid out, ready to be written.
pub(super) struct LaidOut {
    /// The font, with every character the pages use.
    pub(super) font: Font,
    /// Each page's content stream.
    pub(super) pages: Vec<Content>,
    /// The page size: A4, portrait or landscape.
    pub(super) size: (f32, f32),
}

/// The report's pages.
pub(super) fn lay_out(report: &Report) -> Result<LaidOut, RunError> {
    let font = Font::load()?;
    let natural = natural_widths(report, &font);
    let portrait_width = A4.0 - 2.0 * MARGIN;
    let wide = natural
        .iter()
        .map(|w| w.min(COMFORTABLE_COLUMN))
        .sum::<f32>()
        > portrait_width;
    let page = if wide { (A4.1, A4.0) } else { A4 };
    let mut layout = Layout::new(font, page);
    let width = layout.text_width();
    let title = wrap(&layout.font, &report.title, width, TITLE_SIZE, usize::MAX);
    layout.lines(&title, TITLE_SIZE, true);
    layout.y -= TEXT_SIZE * 0.5;
    if let Some(text) = &report.text {
        let lines = wrap(&layout.font, text, width, TEXT_SIZE, usize::MAX);
        layout.lines(&lines, TEXT_SIZE, false);
    }
    layout.y -= TEXT_SIZE;
    if !report.columns.is_empty() {
        let widths = fit_widths(&natural, width);
        layout.table(&report.columns, &report.rows, &widths);
    }
    let (font, pages) = layout.finish();
    Ok(LaidOut {
        font,
        pages,
        size: page,
    })
}

/// Each column's natural width at the table's size: its widest line
/// (header or cell) and the padding.
fn natural_widths(report: &Report, font: &Font) -> Vec<f32> {
    let widest = |text: &str| {
        text.split('\n')
            .map(|line| font.width(line, CELL_SIZE))
            .fold(0.0, f32::max)
    };
    report
        .columns
        .iter()
        .enumerate()
        .map(|(i, header)| {
            let cells = report.rows.iter().filter_map(|r| r.get(i));
            cells.fold(widest(header), |w, c| w.max(widest(c))) + 2.0 * PAD
        })
        .collect()
}

/// Column widths filling `total`: natural widths capped at
/// [`MAX_COLUMN_SHARE`] of it, at least [`MIN_COLUMN`], scaled together.
fn fit_widths(natural: &[f32], total: f32) -> Vec<f32> {
    let cap = total * MAX_COLUMN_SHARE;
    let capped: Vec<f32> = natural.iter().map(|w| w.min(cap).max(MIN_COLUMN)).collect();
    let sum: f32 = capped.iter().sum();
    capped.iter().map(|w| w * total / sum).collect()
}

/// DejaVu Sans: glyph metrics for the layout, and the characters used so
/// far, each with its CID in the content streams.
pub(super) struct Font {
    pub(super) face: ttf_parser::Face<'static>,
    /// Font units to thousandths of the font size (PDF glyph space).
    pub(super) scale: f32,
    cids: HashMap<char, u16>,
    /// The characters in CID order: CID `i + 1` is `chars[i]`.
    pub(super) chars: Vec<char>,
}

impl Font {
    pub(super) fn load() -> Result<Font, RunError> {
        let face = ttf_parser::Face::parse(dejavu::sans::regular(), 0)
            .map_err(|e| super::report_error(format!("the embedded font cannot be read ({e})")))?;
        let scale = 1000.0 / f32::from(face.units_per_em().max(1));
        Ok(Font {
            face,
            scale,
            cids: HashMap::new(),
            chars: Vec::new(),
        })
    }

    /// The glyph of `c`, or the missing-glyph box (glyph 0).
    pub(super) fn glyph(&self, c: char) -> ttf_parser::GlyphId {
        self.face.glyph_index(c).unwrap_or(ttf_parser::GlyphId(0))
    }

    /// The advance of a glyph in thousandths of the font size.
    pub(super) fn advance(&self, glyph: ttf_parser::GlyphId) -> f32 {
        f32::from(self.face.glyph_hor_advance(glyph).unwrap_or(0)) * self.scale
    }

    /// The width of `text` at `size` points (no kerning: none is applied).
    fn width(&self, text: &str, size: f32) -> f32 {
        text.chars().map(|c| self.char_width(c, size)).sum()
    }

    fn char_width(&self, c: char, size: f32) -> f32 {
        self.advance(self.glyph(c)) * size / 1000.0
    }

    /// `text` as two-byte CIDs (the Identity-H encoding).
    pub(super) fn encode(&mut self, text: &str) -> Vec<u8> {
        text.chars()
            .flat_map(|c| self.cid(c).to_be_bytes())
            .collect()
    }

    /// The CID of `c`, the next free one on its first use. CID 0 is the
    /// missing glyph: past 65,535 different characters, the rest show as it.
    fn cid(&mut self, c: char) -> u16 {
        if let Some(&cid) = self.cids.get(&c) {
            return cid;
        }
        let Ok(cid) = u16::try_from(self.chars.len() + 1) else {
            return 0;
        };
        self.chars.push(c);
        self.cids.insert(c, cid);
        cid
    }

    /// The subset's tag (`ABCDEF+DejaVuSans`): six letters from a hash of
    /// its characters, the same for the same characters.
    pub(super) fn subset_name(&self) -> String {
        let used: String = self.chars.iter().collect();
        let tag: String = Sha256::digest(used.as_bytes())
            .iter()
            .take(6)
            .map(|b| char::from(b'A' + b % 26))
            .collect();
        format!("{tag}+DejaVuSans")
    }
}

/// `text` broken into lines no wider than `width` at `size`: at spaces, or
/// inside a word wider than a line; `\n` breaks a line. Past `max_lines`,
/// the last line kept ends with an ellipsis.
fn wrap(font: &Font, text: &str, width: f32, size: f32, max_lines: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        if lines.len() > max_lines {
            break;
        }
        wrap_paragraph(font, paragraph, width, size, max_lines, &mut lines);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        if let Some(last) = lines.last_mut() {
            *last = ellipsize(font, last, width, size);
        }
    }
    lines
}

/// Appends the lines of one paragraph (no `\n`) to `lines`, stopping once
/// there are more than `limit`.
fn wrap_paragraph(
    font: &Font,
    text: &str,
    width: f32,
    size: f32,
    limit: usize,
    lines: &mut Vec<String>,
) {
    let space = font.char_width(' ', size);
    let mut line = String::new();
    let mut line_width = 0.0;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if lines.len() > limit {
            return;
        }
        let w = font.width(word, size);
        if !line.is_empty() && line_width + space + w <= width {
            line.push(' ');
            line.push_str(word);
            line_width += space + w;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        line_width = 0.0;
        // A word wider than a line is broken between characters.
        for c in word.chars() {
            let cw = font.char_width(c, size);
            if !line.is_empty() && line_width + cw > width {
                lines.push(std::mem::take(&mut line));
                line_width = 0.0;
            }
            line.push(c);
            line_width += cw;
        }
    }
    lines.push(line);
}

/// `line` cut to leave room for "…" within `width`, then "…".
fn ellipsize(font: &Font, line: &str, width: f32, size: f32) -> String {
    let room = width - font.char_width('…', size);
    let mut out = String::new();
    let mut used = 0.0;
    for c in line.chars() {
        used += font.char_width(c, size);
        if used > room {
            break;
        }
        out.push(c);
    }
    let mut out = out.trim_end().to_string();
    out.push('…');
    out
}

/// Pages being filled from the top down.
struct Layout {
    font: Font,
    /// Page width and height.
    page: (f32, f32),
    done: Vec<Content>,
    current: Content,
    /// The top of the free space on the current page.
    y: f32,
}

impl Layout {
    fn new(font: Font, page: (f32, f32)) -> Layout {
        Layout {
            font,
            page,
            done: Vec::new(),
            current: Content::new(),
            y: page.1 - MARGIN,
        }
    }

    fn text_width(&self) -> f32 {
        self.page.0 - 2.0 * MARGIN
    }

    fn fits(&self, height: f32) -> bool {
        self.y - height >= MARGIN
    }

    fn new_page(&mut self) {
        let full = std::mem::replace(&mut self.current, Content::new());
        self.done.push(full);
        self.y = self.page.1 - MARGIN;
    }

    /// Lines of running text at the left margin, flowing onto new pages.
    fn lines(&mut self, lines: &[String], size: f32, bold: bool) {
        for line in lines {
            if !self.fits(size * LINE) {
                self.new_page();
            }
            let baseline = self.y - size;
            draw_text(
                &mut self.current,
                &mut self.font,
                MARGIN,
                baseline,
                size,
                line,
                bold,
            );
            self.y -= size * LINE;
        }
    }

    /// The table: the header row on top of every page it spans.
    fn table(&mut self, columns: &[String], rows: &[Vec<String>], widths: &[f32]) {
        let wrap_row = |font: &Font, cells: &[String], max: usize| -> Vec<Vec<String>> {
            cells
                .iter()
                .zip(widths)
                .map(|(c, w)| wrap(font, c, w - 2.0 * PAD, CELL_SIZE, max))
                .collect()
        };
        let header = wrap_row(&self.font, columns, MAX_HEADER_LINES);
        // The header starts a page only with the first row below it.
        let first = rows.first().map_or(0.0, |row| {
            row_height(&wrap_row(&self.font, row, MAX_CELL_LINES))
        });
        if !self.fits(row_height(&header) + first) {
            self.new_page();
        }
        self.row(&header, widths, Some(HEADER_GRAY), true);
        for (i, row) in rows.iter().enumerate() {
            let cells = wrap_row(&self.font, row, MAX_CELL_LINES);
            if !self.fits(row_height(&cells)) {
                self.new_page();
                self.row(&header, widths, Some(HEADER_GRAY), true);
            }
            let stripe = (i % 2 == 1).then_some(STRIPE_GRAY);
            self.row(&cells, widths, stripe, false);
        }
    }

    /// One table row at the top of the free space, on a grey background
    /// when `shade` is given, with a rule below.
    fn row(&mut self, cells: &[Vec<String>], widths: &[f32], shade: Option<f32>, bold: bool) {
        let height = row_height(cells);
        let total: f32 = widths.iter().sum();
        let bottom = self.y - height;
        let c = &mut self.current;
        if let Some(gray) = shade {
            c.set_fill_gray(gray);
            c.rect(MARGIN, bottom, total, height);
            c.fill_nonzero();
            c.set_fill_gray(0.0);
        }
        // A darker rule under the header.
        c.set_stroke_gray(if bold { 0.4 } else { 0.8 });
        c.set_line_width(0.5);
        c.move_to(MARGIN, bottom);
        c.line_to(MARGIN + total, bottom);
        c.stroke();
        let mut x = MARGIN;
        for (lines, w) in cells.iter().zip(widths) {
            let mut baseline = self.y - PAD - CELL_SIZE;
            for line in lines {
                draw_text(
                    &mut self.current,
                    &mut self.font,
                    x + PAD,
                    baseline,
                    CELL_SIZE,
                    line,
                    bold,
                );
                baseline -= CELL_SIZE * LINE;
            }
            x += w;
        }
        self.y = bottom;
    }

    /// The font and every page, each with its "Page i of n" footer.
    fn finish(mut self) -> (Font, Vec<Content>) {
        self.done.push(self.current);
        let count = self.done.len();
        for (i, page) in self.done.iter_mut().enumerate() {
            let footer = format!("Page {} of {count}", i + 1);
            let x = (self.page.0 - self.font.width(&footer, FOOTER_SIZE)) / 2.0;
            draw_text(
                page,
                &mut self.font,
                x,
                MARGIN / 2.0,
                FOOTER_SIZE,
                &footer,
                false,
            );
        }
        (self.font, self.done)
    }
}

/// The height of a row of wrapped cells.
fn row_height(cells: &[Vec<String>]) -> f32 {
    let lines = cells.iter().map(Vec::len).max().unwrap_or(1).max(1);
    lines as f32 * CELL_SIZE * LINE + 2.0 * PAD - (LINE - 1.0) * CELL_SIZE
}

/// One line of text with its baseline at (`x`, `y`); bold by stroking
/// the outlines too.
fn draw_text(c: &mut Content, font: &mut Font, x: f32, y: f32, size: f32, text: &str, bold: bool) {
    if text.is_empty() {
        return;
    }
    let cids = font.encode(text);
    if bold {
        c.save_state();
        c.set_stroke_gray(0.0);
        c.set_line_width(size * 0.03);
    }
    c.begin_text();
    c.set_font(FONT, size);
    if bold {
        c.set_text_rendering_mode(TextRenderingMode::FillStroke);
    }
    c.next_line(x, y);
    c.show(Str(&cids));
    c.end_text();
    if bold {
        c.restore_state();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_wraps_then_ends_with_an_ellipsis() {
        let font = Font::load().unwrap();
        let words = "lorem ipsum dolor sit amet ".repeat(40);
        let lines = wrap(&font, &words, 100.0, CELL_SIZE, MAX_CELL_LINES);
        assert_eq!(lines.len(), MAX_CELL_LINES);
        assert!(
            lines.iter().all(|l| font.width(l, CELL_SIZE) <= 100.0),
            "{lines:?}"
        );
        assert!(lines[5].ends_with('…'), "{lines:?}");
        assert!(lines[..5].iter().all(|l| !l.ends_with('…')));
        // Just enough lines: no ellipsis.
        let two = wrap(&font, "lorem ipsum dolor sit amet", 60.0, CELL_SIZE, 2);
        assert_eq!(two, ["lorem ipsum", "dolor sit amet"]);
    }

    #[test]
    fn a_word_wider_than_the_column_is_broken_not_lost() {
        let font = Font::load().unwrap();
        let lines = wrap(&font, "abcdefghijklmnopqrstuvwxyz", 30.0, CELL_SIZE, 10);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(
            lines.iter().all(|l| font.width(l, CELL_SIZE) <= 30.0),
            "{lines:?}"
        );
        assert_eq!(lines.concat(), "abcdefghijklmnopqrstuvwxyz");
        // Even a column narrower than one letter makes progress.
        assert_eq!(wrap(&font, "abc", 0.5, CELL_SIZE, 10), ["a", "b", "c"]);
    }

    #[test]
    fn newlines_break_lines_and_blank_text_is_one_empty_line() {
        let font = Font::load().unwrap();
        assert_eq!(wrap(&font, "a b\nc", 100.0, CELL_SIZE, 6), ["a b", "c"]);
        assert_eq!(wrap(&font, "", 100.0, CELL_SIZE, 6), [""]);
        assert_eq!(wrap(&font, "a\n\nb", 100.0, CELL_SIZE, 6), ["a", "", "b"]);
    }

    #[test]
    fn widths_follow_the_content_capped_and_fill_the_table() {
        let w = fit_widths(&[30.0, 60.0], 500.0);
        assert!((w.iter().sum::<f32>() - 500.0).abs() < 0.01);
        assert!((w[1] / w[0] - 2.0).abs() < 0.01, "{w:?}");
        // A very wide column is capped at 40% of the table before scaling.
        let w = fit_widths(&[50.0, 5000.0], 500.0);
        assert!((w[1] / w[0] - 4.0).abs() < 0.01, "{w:?}");
        // A nearly empty column still gets room.
        let w = fit_widths(&[1.0, 100.0], 500.0);
        assert!(w[0] >= MIN_COLUMN, "{w:?}");
    }

    #[test]
    fn characters_get_cids_in_order_of_first_use() {
        let mut font = Font::load().unwrap();
        assert_eq!(font.encode("aba€"), [0, 1, 0, 2, 0, 1, 0, 3]);
        assert_eq!(font.chars, ['a', 'b', '€']);
        // The tag depends on the characters only.
        let mut again = Font::load().unwrap();
        again.encode("ab€");
        assert_eq!(font.subset_name(), again.subset_name());
        assert!(font.subset_name().ends_with("+DejaVuSans"));
    }
}
