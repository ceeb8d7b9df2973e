//! One row of numbers per optimiser step, written to `metrics.parquet` with TRL/verl column
//! names (`reward`, `rewards/recognition/mean`, `kl`, `clip_ratio/high_mean`, ...).

use arrow_array::{ArrayRef, Float64Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One step's metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Optimiser step, from 1.
    pub step: u64,
    /// Metric name → value.
    pub values: BTreeMap<String, f64>,
}

/// Writes all rows (columns = union of names; missing values are NaN), atomically.
pub fn write(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let mut names: Vec<&String> = rows.iter().flat_map(|r| r.values.keys()).collect();
    names.sort();
    names.dedup();
    let mut fields = vec![Field::new("step", DataType::UInt64, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(rows.iter().map(|r| r.step).collect::<UInt64Array>())];
    for name in names {
        fields.push(Field::new(name.as_str(), DataType::Float64, false));
        columns.push(Arc::new(rows.iter().map(|r| r.values.get(name).copied().unwrap_or(f64::NAN)).collect::<Float64Array>()));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(std::io::Error::other)?;
    selfemo_datasets::atomic::write_atomically(path, |out| {
        let mut w = ArrowWriter::try_new(out, batch.schema(), None).map_err(std::io::Error::other)?;
        w.write(&batch).map_err(std::io::Error::other)?;
        w.close().map_err(std::io::Error::other)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn rows_become_named_columns() {
        let row = |s, r| Row { step: s, values: BTreeMap::from([("reward".to_string(), r), ("kl".to_string(), 0.0)]) };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        write(&path, &[row(1, 0.5), row(2, 0.75)]).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap().build().unwrap().next().unwrap().unwrap();
        let names: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["step", "kl", "reward"]);
        let reward = batch.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(reward.values(), &[0.5, 0.75]);
    }
}
