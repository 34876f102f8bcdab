//! Parquet rows: every leaf column read with its own column reader, a batch of records at a
//! time, and the values of one record put side by side.
//!
//! A leaf column is exactly what `names` names a column after, so a row's value for
//! `items.sku` is the leaf `items.sku` of that record, whatever structs and lists lie above it:
//! a leaf under no list is one value; a leaf under lists is the record's values, in brackets
//! as the lists nest (`[a, b]`, `[[1, 2], [3]]`), rebuilt from the repetition and definition
//! levels. A missing or empty outermost list is an empty value, a missing inner list `[]`, a
//! null "". Values become text as `docs/formats.md` describes: dates and timestamps in ISO
//! 8601, decimals with their scale, text as written, other binary as hex.
//!
//! Memory is one batch of each leaf column. It owns reading values, not deciding which file is
//! acceptable: that was `extract`'s job, and a file that fails here is refused all the same.

use super::super::rows::{MAX_VALUE_BYTES, Sink, truncate};
use super::super::{Rejection, parquet::plain};
use super::BATCH_ROWS;
use ::parquet::basic::{ConvertedType, LogicalType, Repetition, TimeUnit};
use ::parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use ::parquet::data_type::{ByteArray, DataType, FixedLenByteArray, Int96};
use ::parquet::errors::ParquetError;
use ::parquet::file::reader::{FileReader, SerializedFileReader};
use ::parquet::schema::types::{ColumnDescriptor, Type};
use std::fmt::Write as _;
use std::fs::File;

/// Hand on every record of the file, a batch at a time. `kept[i]` is the leaf column that
/// column `i` of `columns` comes from.
pub(super) fn stream(
    file: File,
    kept: &[usize],
    columns: &[String],
    sink: &mut Sink<'_>,
) -> Result<(), Rejection> {
    if sink.columns(columns).is_break() {
        return Ok(());
    }
    let reader = SerializedFileReader::new(file)
        .map_err(|e| Rejection::new(format!("its footer cannot be read: {}", plain(&e))))?;
    let metadata = reader.metadata();
    let schema = metadata.file_metadata().schema_descr();
    let groups = metadata.num_row_groups();
    for group in 0..groups {
        let at = |what: String| {
            Rejection::new(format!(
                "row group {} of {groups} cannot be read: {what}",
                group + 1
            ))
        };
        let declared = usize::try_from(metadata.row_group(group).num_rows()).unwrap_or(0);
        let row_group = reader.get_row_group(group).map_err(|e| at(plain(&e)))?;
        let mut leaves = kept
            .iter()
            .map(|&i| {
                let descr = schema.column(i);
                let reader = row_group.get_column_reader(i).map_err(|e| at(plain(&e)))?;
                Leaf::new(&descr, schema.root_schema(), reader).map_err(at)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut done = 0;
        while done < declared {
            let want = (declared - done).min(BATCH_ROWS);
            for leaf in &mut leaves {
                let read = leaf.read(want).map_err(|e| at(plain(&e)))?;
                if read != want {
                    return Err(at(format!(
                        "column {} holds fewer rows than its footer says",
                        leaf.name
                    )));
                }
            }
            for _ in 0..want {
                sink.clear();
                for (column, leaf) in leaves.iter_mut().enumerate() {
                    if let Some(value) = sink.value_mut(column) {
                        leaf.next_record(value);
                    }
                }
                sink.cut();
                if sink.emit().is_break() {
                    return Ok(());
                }
            }
            done += want;
        }
    }
    Ok(())
}

/// The unit of a time or timestamp.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Millis,
    Micros,
    Nanos,
}

impl Unit {
    fn of(unit: &TimeUnit) -> Self {
        match unit {
            TimeUnit::MILLIS => Unit::Millis,
            TimeUnit::MICROS => Unit::Micros,
            TimeUnit::NANOS => Unit::Nanos,
        }
    }

    fn nanos(self, value: i64) -> i128 {
        i128::from(value)
            * match self {
                Unit::Millis => 1_000_000,
                Unit::Micros => 1_000,
                Unit::Nanos => 1,
            }
    }
}

/// What a leaf's physical values mean, from its logical (or older converted) type.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Plain,
    Text,
    Unsigned,
    Date,
    Time(Unit),
    /// Whether the instant is in UTC (shown with a `Z`).
    Timestamp(Unit, bool),
    Decimal(i32),
    Uuid,
    Float16,
}

impl Kind {
    fn of(descr: &ColumnDescriptor) -> Self {
        match descr.logical_type_ref() {
            Some(LogicalType::String | LogicalType::Enum | LogicalType::Json) => Kind::Text,
            Some(LogicalType::Date) => Kind::Date,
            Some(LogicalType::Time(time)) => Kind::Time(Unit::of(&time.unit)),
            Some(LogicalType::Timestamp(time)) => {
                Kind::Timestamp(Unit::of(&time.unit), time.is_adjusted_to_u_t_c)
            }
            Some(LogicalType::Decimal(decimal)) => Kind::Decimal(decimal.scale),
            Some(LogicalType::Integer(int)) if !int.is_signed => Kind::Unsigned,
            Some(LogicalType::Uuid) => Kind::Uuid,
            Some(LogicalType::Float16) => Kind::Float16,
            _ => match descr.converted_type() {
                ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON => Kind::Text,
                ConvertedType::DATE => Kind::Date,
                ConvertedType::TIME_MILLIS => Kind::Time(Unit::Millis),
                ConvertedType::TIME_MICROS => Kind::Time(Unit::Micros),
                ConvertedType::TIMESTAMP_MILLIS => Kind::Timestamp(Unit::Millis, true),
                ConvertedType::TIMESTAMP_MICROS => Kind::Timestamp(Unit::Micros, true),
                ConvertedType::DECIMAL => Kind::Decimal(descr.type_scale()),
                ConvertedType::UINT_8
                | ConvertedType::UINT_16
                | ConvertedType::UINT_32
                | ConvertedType::UINT_64 => Kind::Unsigned,
                _ => Kind::Plain,
            },
        }
    }
}

/// Physical values as text.
trait Render: Sized {
    fn render(&self, kind: Kind, out: &mut String);
}

impl Render for bool {
    fn render(&self, _: Kind, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

impl Render for i32 {
    fn render(&self, kind: Kind, out: &mut String) {
        match kind {
            Kind::Date => date(i64::from(*self), out),
            Kind::Time(unit) => time_of_day(unit.nanos(i64::from(*self)), out),
            Kind::Decimal(scale) => decimal(i128::from(*self), scale, out),
            Kind::Unsigned => push(out, *self as u32),
            _ => push(out, self),
        }
    }
}

impl Render for i64 {
    fn render(&self, kind: Kind, out: &mut String) {
        match kind {
            Kind::Time(unit) => time_of_day(unit.nanos(*self), out),
            Kind::Timestamp(unit, utc) => timestamp(unit.nanos(*self), utc, out),
            Kind::Decimal(scale) => decimal(i128::from(*self), scale, out),
            Kind::Unsigned => push(out, *self as u64),
            _ => push(out, self),
        }
    }
}

impl Render for Int96 {
    fn render(&self, _: Kind, out: &mut String) {
        // Nanoseconds of the day, then the Julian day: Impala's and Spark's old timestamps.
        let [low, high, day] = [self.data()[0], self.data()[1], self.data()[2]];
        let of_day = i128::from(u64::from(high) << 32 | u64::from(low));
        let days = i128::from(day) - 2_440_588;
        timestamp(days * 86_400_000_000_000 + of_day, false, out);
    }
}

impl Render for f32 {
    fn render(&self, _: Kind, out: &mut String) {
        push(out, self);
    }
}

impl Render for f64 {
    fn render(&self, _: Kind, out: &mut String) {
        push(out, self);
    }
}

impl Render for ByteArray {
    fn render(&self, kind: Kind, out: &mut String) {
        bytes(self.data(), kind, out);
    }
}

impl Render for FixedLenByteArray {
    fn render(&self, kind: Kind, out: &mut String) {
        bytes(self.data(), kind, out);
    }
}

fn push(out: &mut String, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

fn bytes(data: &[u8], kind: Kind, out: &mut String) {
    match kind {
        Kind::Decimal(scale) if data.len() <= 16 => {
            let fill = if data.first().is_some_and(|b| b & 0x80 != 0) {
                0xFF
            } else {
                0
            };
            let mut wide = [fill; 16];
            wide[16 - data.len()..].copy_from_slice(data);
            decimal(i128::from_be_bytes(wide), scale, out);
        }
        Kind::Uuid if data.len() == 16 => {
            for (i, byte) in data.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    out.push('-');
                }
                let _ = write!(out, "{byte:02x}");
            }
        }
        Kind::Float16 if data.len() == 2 => {
            push(out, f16_to_f32(u16::from_le_bytes([data[0], data[1]])))
        }
        _ => match std::str::from_utf8(&data[..data.len().min(MAX_VALUE_BYTES + 4)]) {
            Ok(text) => out.push_str(text),
            // Cut inside a character by the bound above: the text up to it.
            Err(e) if e.error_len().is_none() && data.len() > MAX_VALUE_BYTES => {
                out.push_str(&String::from_utf8_lossy(&data[..e.valid_up_to()]));
            }
            Err(_) => {
                out.push_str("0x");
                for byte in data.iter().take(MAX_VALUE_BYTES / 2) {
                    let _ = write!(out, "{byte:02x}");
                }
            }
        },
    }
}

/// An IEEE half-precision number.
fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1F);
    let fraction = f32::from(bits & 0x3FF);
    sign * match exponent {
        0 => fraction * 2f32.powi(-24),
        31 if fraction == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + fraction / 1024.0) * 2f32.powi(e - 15),
    }
}

/// `12345` with scale 2 as `123.45`; trailing zeros of the fraction dropped, as a person
/// writes the number (`93.000` is `93`).
fn decimal(value: i128, scale: i32, out: &mut String) {
    if value < 0 {
        out.push('-');
    }
    let digits = value.unsigned_abs().to_string();
    let scale = usize::try_from(scale).unwrap_or(0);
    if scale == 0 {
        out.push_str(&digits);
        return;
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    out.push_str(whole);
    let fraction = fraction.trim_end_matches('0');
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
}

/// Days since 1970-01-01 as `2024-01-31`.
fn date(days: i64, out: &mut String) {
    match days
        .checked_mul(86_400)
        .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
    {
        Some(at) => push(out, jiff::tz::Offset::UTC.to_datetime(at).date()),
        None => push(out, days),
    }
}

/// Nanoseconds since 1970 as `2024-01-31T10:30:00`, with `Z` for an instant in UTC.
fn timestamp(nanos: i128, utc: bool, out: &mut String) {
    match jiff::Timestamp::from_nanosecond(nanos) {
        Ok(at) => {
            push(out, jiff::tz::Offset::UTC.to_datetime(at));
            if utc {
                out.push('Z');
            }
        }
        Err(_) => push(out, nanos),
    }
}

/// Nanoseconds since midnight as `10:30:00` (fraction only when there is one).
fn time_of_day(nanos: i128, out: &mut String) {
    let seconds = nanos.div_euclid(1_000_000_000);
    let fraction = nanos.rem_euclid(1_000_000_000);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if fraction > 0 {
        let digits = format!("{fraction:09}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
}

/// A typed column reader and its batch of values.
struct Typed<T: DataType> {
    reader: ColumnReaderImpl<T>,
    values: Vec<T::T>,
}

/// What a leaf needs from its typed reader, whatever the physical type.
trait Values {
    /// Read `records` whole records, replacing the batch; returns the records read.
    fn read(
        &mut self,
        records: usize,
        def: Option<&mut Vec<i16>>,
        rep: Option<&mut Vec<i16>>,
    ) -> Result<usize, ParquetError>;
    /// Value `i` of the batch as text.
    fn render(&self, i: usize, kind: Kind, out: &mut String);
}

impl<T: DataType> Values for Typed<T>
where
    T::T: Render,
{
    fn read(
        &mut self,
        records: usize,
        def: Option<&mut Vec<i16>>,
        rep: Option<&mut Vec<i16>>,
    ) -> Result<usize, ParquetError> {
        self.values.clear();
        let (read, _, _) = self
            .reader
            .read_records(records, def, rep, &mut self.values)?;
        Ok(read)
    }

    fn render(&self, i: usize, kind: Kind, out: &mut String) {
        if let Some(value) = self.values.get(i) {
            value.render(kind, out);
        }
    }
}

fn typed<T: DataType>(reader: ColumnReaderImpl<T>) -> Box<dyn Values>
where
    T::T: Render,
{
    Box::new(Typed {
        reader,
        values: Vec::new(),
    })
}

/// One leaf column being read: its values, levels and where the next record starts.
struct Leaf {
    name: String,
    values: Box<dyn Values>,
    kind: Kind,
    max_def: i16,
    max_rep: i16,
    /// `list_def[k]`: the definition level at which the list at repetition level `k + 1` has
    /// at least one element.
    list_def: Vec<i16>,
    def: Vec<i16>,
    rep: Vec<i16>,
    /// Next level and next value of the batch.
    level: usize,
    value: usize,
}

impl Leaf {
    fn new(descr: &ColumnDescriptor, root: &Type, reader: ColumnReader) -> Result<Self, String> {
        let values = match reader {
            ColumnReader::BoolColumnReader(r) => typed(r),
            ColumnReader::Int32ColumnReader(r) => typed(r),
            ColumnReader::Int64ColumnReader(r) => typed(r),
            ColumnReader::Int96ColumnReader(r) => typed(r),
            ColumnReader::FloatColumnReader(r) => typed(r),
            ColumnReader::DoubleColumnReader(r) => typed(r),
            ColumnReader::ByteArrayColumnReader(r) => typed(r),
            ColumnReader::FixedLenByteArrayColumnReader(r) => typed(r),
        };
        let name = descr.path().string();
        let list_def = list_levels(descr, root)
            .ok_or_else(|| format!("the schema does not lead to its column {name}"))?;
        Ok(Self {
            name,
            values,
            kind: Kind::of(descr),
            max_def: descr.max_def_level(),
            max_rep: descr.max_rep_level(),
            list_def,
            def: Vec::new(),
            rep: Vec::new(),
            level: 0,
            value: 0,
        })
    }

    fn read(&mut self, records: usize) -> Result<usize, ParquetError> {
        self.def.clear();
        self.rep.clear();
        self.level = 0;
        self.value = 0;
        let def = (self.max_def > 0).then_some(&mut self.def);
        let rep = (self.max_rep > 0).then_some(&mut self.rep);
        self.values.read(records, def, rep)
    }

    /// The next record's value, appended to `out`.
    fn next_record(&mut self, out: &mut String) {
        if self.max_rep == 0 {
            let defined = self.max_def == 0 || self.def.get(self.level) == Some(&self.max_def);
            self.level += 1;
            if defined {
                self.values.render(self.value, self.kind, out);
                self.value += 1;
            }
            return;
        }
        let depth_max = self.list_def.len();
        let mut depth = 0;
        let mut first = true;
        while self.level < self.rep.len() && (first || self.rep[self.level] != 0) {
            let (def, rep) = (self.def[self.level], self.rep[self.level] as usize);
            self.level += 1;
            if first {
                first = false;
                if self.list_def.first().is_some_and(|&at| def < at) {
                    // The record's outermost list is missing or empty.
                    return;
                }
            } else {
                while depth > rep {
                    out.push(']');
                    depth -= 1;
                }
                out.push_str(", ");
            }
            while depth < depth_max && def >= self.list_def[depth] {
                out.push('[');
                depth += 1;
            }
            if depth < depth_max {
                out.push_str("[]");
            } else if def == self.max_def {
                self.values.render(self.value, self.kind, out);
                self.value += 1;
            }
            if out.len() > MAX_VALUE_BYTES {
                // The rest of the record is still walked, so the next record starts right.
                truncate(out);
            }
        }
        while depth > 0 {
            out.push(']');
            depth -= 1;
        }
    }
}

/// The definition level at which each repeated field on the path to `descr` holds an element,
/// outermost first; `None` when the path does not lead through the schema.
fn list_levels(descr: &ColumnDescriptor, root: &Type) -> Option<Vec<i16>> {
    let mut node = root;
    let mut def = 0i16;
    let mut levels = Vec::new();
    for part in descr.path().parts() {
        node = node.get_fields().iter().find(|f| f.name() == part)?;
        match node.get_basic_info().repetition() {
            Repetition::OPTIONAL => def += 1,
            Repetition::REPEATED => {
                def += 1;
                levels.push(def);
            }
            Repetition::REQUIRED => {}
        }
    }
    let consistent = def == descr.max_def_level() && levels.len() == descr.max_rep_level() as usize;
    consistent.then_some(levels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut String)) -> String {
        let mut out = String::new();
        f(&mut out);
        out
    }

    #[test]
    fn values_read_as_a_person_writes_them() {
        assert_eq!(text(|o| decimal(12345, 2, o)), "123.45");
        assert_eq!(text(|o| decimal(-5, 3, o)), "-0.005");
        assert_eq!(text(|o| decimal(7, 0, o)), "7");
        assert_eq!(text(|o| decimal(93_000, 3, o)), "93");
        assert_eq!(text(|o| decimal(1250, 2, o)), "12.5");
        assert_eq!(text(|o| decimal(-1, 0, o)), "-1");
        assert_eq!(text(|o| date(19_753, o)), "2024-01-31");
        assert_eq!(text(|o| date(i64::MAX, o)), i64::MAX.to_string());
        let at = 1_706_697_000_000_000_000i128;
        assert_eq!(text(|o| timestamp(at, false, o)), "2024-01-31T10:30:00");
        assert_eq!(
            text(|o| timestamp(at + 500_000_000, true, o)),
            "2024-01-31T10:30:00.5Z"
        );
        assert_eq!(text(|o| time_of_day(37_800_000_000_000, o)), "10:30:00");
        assert_eq!(text(|o| time_of_day(1_250_000_000, o)), "00:00:01.25");
        assert_eq!(text(|o| 3.0f64.render(Kind::Plain, o)), "3");
        assert_eq!(text(|o| 0.1f32.render(Kind::Plain, o)), "0.1");
        assert_eq!(text(|o| (-1i32).render(Kind::Unsigned, o)), "4294967295");
        assert_eq!(text(|o| f16_to_f32(0x3C00).render(Kind::Plain, o)), "1");
        assert_eq!(text(|o| bytes(b"\xFF\x01", Kind::Plain, o)), "0xff01");
        assert_eq!(text(|o| bytes(&[0xFF, 0x85], Kind::Decimal(1), o)), "-12.3");
        let uuid = [0x12u8; 16];
        assert_eq!(
            text(|o| bytes(&uuid, Kind::Uuid, o)),
            "12121212-1212-1212-1212-121212121212"
        );
    }
}
