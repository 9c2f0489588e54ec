//! The verbs' tables (`status`, `audit`, `learn`): no borders, columns two spaces apart, no
//! trailing spaces; colour only when the caller says so (a terminal, without `NO_COLOR`).

use comfy_table::{Cell, CellAlignment, Color, ColumnConstraint, Table, Width, presets};

/// Space after every column but the last.
const GAP: u16 = 2;

/// A table with `header`.
pub fn new(header: &[&str], colour: bool) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING).set_header(header.to_vec());
    // Colour (or none) whatever stdout is: the caller decided.
    table.force_no_tty();
    if colour {
        table.enforce_styling().style_text_only();
    }
    let last = header.len().saturating_sub(1);
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { GAP }));
    }
    table
}

/// Column `index` at least `width` characters wide, its cells aligned to the right or not.
pub fn widen(table: &mut Table, index: usize, width: u16, right: bool) {
    let column = table.column_mut(index).expect("a column of the header");
    column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(
        width + column.padding_width(),
    )));
    if right {
        column.set_cell_alignment(CellAlignment::Right);
    }
}

/// A cell, in `colour` where there is one and text to paint. A line break would break the
/// table's rows: it is shown as a space.
pub fn cell(text: &str, colour: Option<Color>) -> Cell {
    let cell = Cell::new(text.replace('\n', " "));
    match colour {
        Some(c) if !text.is_empty() => cell.fg(c),
        _ => cell,
    }
}

/// The header line, then one line per row, with no trailing spaces.
pub fn lines(table: &Table) -> impl Iterator<Item = String> + '_ {
    table.lines().map(|line| line.trim_end().to_string())
}
