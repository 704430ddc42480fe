//! The PDF file of a laid-out report: catalog, pages, document info and
//! the embedded font subset, every stream Flate-compressed.

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::layout::{Font, LaidOut, FONT};
use super::report_error;
use crate::core::error::RunError;

/// The character collection of an Identity-H font.
const IDENTITY: SystemInfo<'static> = SystemInfo {
    registry: Str(b"Adobe"),
    ordering: Str(b"Identity"),
    supplement: 0,
};

/// The document: catalog, pages, info (the title only: no dates) and font.
pub(super) fn write_pdf(title: &str, laid_out: LaidOut) -> Result<Vec<u8>, RunError> {
    let LaidOut { font, pages, size } = laid_out;
    let mut next = Ref::new(1);
    let catalog = next.bump();
    let tree = next.bump();
    let info = next.bump();
    let type0 = next.bump();
    let mut pdf = Pdf::new();
    let page_refs: Vec<(Ref, Ref)> = pages.iter().map(|_| (next.bump(), next.bump())).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_refs.iter().map(|(page, _)| *page))
        .count(i32::try_from(page_refs.len()).unwrap_or(i32::MAX));
    for ((page_ref, content_ref), content) in page_refs.iter().zip(pages) {
        let mut page = pdf.page(*page_ref);
        page.media_box(Rect::new(0.0, 0.0, size.0, size.1));
        page.parent(tree);
        page.contents(*content_ref);
        page.resources().fonts().pair(FONT, type0);
        page.finish();
        let data = deflate(&content.finish());
        pdf.stream(*content_ref, &data).filter(Filter::FlateDecode);
    }
    pdf.document_info(info)
        .title(TextStr(title))
        .producer(TextStr("flowc"));
    write_font(&mut pdf, &font, type0, &mut next)?;
    Ok(pdf.finish())
}

/// The Type 0 font `type0`: a subset of DejaVu Sans holding the glyphs of
/// the characters used, its widths, its CID-to-glyph map and its
/// ToUnicode map.
fn write_font(pdf: &mut Pdf, font: &Font, type0: Ref, next: &mut Ref) -> Result<(), RunError> {
    let (cid_font, descriptor, file, to_unicode, cid_to_gid) = (
        next.bump(),
        next.bump(),
        next.bump(),
        next.bump(),
        next.bump(),
    );
    let mut remapper = subsetter::GlyphRemapper::new();
    let glyphs: Vec<ttf_parser::GlyphId> = font.chars.iter().map(|&c| font.glyph(c)).collect();
    let new_ids: Vec<u16> = glyphs.iter().map(|g| remapper.remap(g.0)).collect();
    let subset = subsetter::subset(dejavu::sans::regular(), 0, &remapper)
        .map_err(|e| report_error(format!("cannot subset the font ({e})")))?;
    let name = font.subset_name();
    let base = Name(name.as_bytes());
    pdf.type0_font(type0)
        .base_font(base)
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid_font)
        .to_unicode(to_unicode);
    let mut cid = pdf.cid_font(cid_font);
    cid.subtype(CidFontType::Type2)
        .base_font(base)
        .system_info(IDENTITY)
        .font_descriptor(descriptor)
        .default_width(font.advance(ttf_parser::GlyphId(0)))
        .cid_to_gid_map_stream(cid_to_gid);
    cid.widths()
        .consecutive(1, glyphs.iter().map(|g| font.advance(*g)));
    cid.finish();
    let face = &font.face;
    let scaled = |v: i16| f32::from(v) * font.scale;
    let bbox = face.global_bounding_box();
    pdf.font_descriptor(descriptor)
        .name(base)
        .flags(FontFlags::NON_SYMBOLIC)
        .bbox(Rect::new(
            scaled(bbox.x_min),
            scaled(bbox.y_min),
            scaled(bbox.x_max),
            scaled(bbox.y_max),
        ))
        .italic_angle(0.0)
        .ascent(scaled(face.ascender()))
        .descent(scaled(face.descender()))
        .cap_height(scaled(face.capital_height().unwrap_or(face.ascender())))
        .stem_v(80.0)
        .font_file2(file);
    pdf.stream(file, &deflate(&subset))
        .filter(Filter::FlateDecode)
        .pair(
            Name(b"Length1"),
            i32::try_from(subset.len()).unwrap_or(i32::MAX),
        );
    let map: Vec<u8> = std::iter::once(0u16)
        .chain(new_ids)
        .flat_map(u16::to_be_bytes)
        .collect();
    pdf.stream(cid_to_gid, &deflate(&map))
        .filter(Filter::FlateDecode);
    let mut cmap = UnicodeCmap::new(Name(b"Custom"), IDENTITY);
    for (i, &c) in font.chars.iter().enumerate() {
        // Always in range: there are at most 65,535 characters.
        if let Ok(cid) = u16::try_from(i + 1) {
            cmap.pair(cid, c);
        }
    }
    pdf.stream(to_unicode, &deflate(&cmap.finish()))
        .filter(Filter::FlateDecode);
    Ok(())
}

/// zlib-compressed `data`, for a FlateDecode stream.
fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::pdf::layout::Font;
    use pdf_writer::Content;

    #[test]
    fn past_65535_characters_the_rest_share_the_missing_glyph() {
        let mut font = Font::load().unwrap();
        let many: String = (0x21..0x2_0000u32)
            .filter_map(char::from_u32)
            .filter(|c| !c.is_control())
            .take(70_000)
            .collect();
        let cids = font.encode(&many);
        assert_eq!(font.chars.len(), 65_535);
        assert_eq!(cids[cids.len() - 2..], [0, 0]);
        let laid_out = LaidOut {
            font,
            pages: vec![Content::new()],
            size: (595.28, 841.89),
        };
        let pdf = write_pdf("many", laid_out).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
    }
}
