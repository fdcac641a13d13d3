package lake

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/apache/iceberg-go/table"
)

// SnapshotInfo is one snapshot of a table, as people read it.
type SnapshotInfo struct {
	ID        int64             `json:"snapshot_id"`
	Parent    *int64            `json:"parent_id,omitempty"`
	Committed time.Time         `json:"committed_at"`
	Operation string            `json:"operation"`
	Current   bool              `json:"current"`
	Summary   map[string]string `json:"summary"`
}

// Snapshots lists t's snapshots, oldest first.
func Snapshots(t *table.Table) []SnapshotInfo {
	out := []SnapshotInfo{}
	cur := t.CurrentSnapshot()
	for _, s := range t.Metadata().Snapshots() {
		sn := SnapshotInfo{ID: s.SnapshotID, Parent: s.ParentSnapshotID, Committed: time.UnixMilli(s.TimestampMs).UTC(),
			Current: cur != nil && cur.SnapshotID == s.SnapshotID, Summary: map[string]string{}}
		if s.Summary != nil {
			sn.Operation = string(s.Summary.Operation)
			for k, v := range s.Summary.Properties {
				sn.Summary[k] = v
			}
		}
		out = append(out, sn)
	}
	slices.SortFunc(out, func(a, b SnapshotInfo) int { return a.Committed.Compare(b.Committed) })
	return out
}

// ColumnInfo is one column of a table's current schema.
type ColumnInfo struct {
	ID       int    `json:"field_id"`
	Name     string `json:"name"`
	Type     string `json:"type"`
	Required bool   `json:"required"`
	Doc      string `json:"doc,omitempty"`
}

// Columns lists t's columns, in schema order.
func Columns(t *table.Table) []ColumnInfo {
	var cols []ColumnInfo
	for _, f := range t.Schema().Fields() {
		cols = append(cols, ColumnInfo{ID: f.ID, Name: f.Name, Type: f.Type.String(), Required: f.Required, Doc: f.Doc})
	}
	return cols
}

// PartitionedBy names t's partition fields as transform(column).
func PartitionedBy(t *table.Table) []string {
	parts := []string{}
	spec := t.Spec()
	for _, f := range spec.Fields() {
		parts = append(parts, fmt.Sprintf("%s(%s)", f.Transform, f.Name))
	}
	return parts
}

// FileInfo is one data file of a table's current snapshot.
type FileInfo struct {
	Path      string `json:"path"`
	Partition string `json:"partition,omitempty"`
	Rows      int64  `json:"rows"`
	Bytes     int64  `json:"bytes"`
}

// DataFiles lists the data files of t's current snapshot, by path.
func DataFiles(ctx context.Context, t *table.Table) ([]FileInfo, error) {
	out := []FileInfo{}
	if t.CurrentSnapshot() == nil {
		return out, nil
	}
	tasks, err := t.Scan().PlanFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", strings.Join(t.Identifier(), "."), err)
	}
	for _, task := range tasks {
		f := task.File
		out = append(out, FileInfo{Path: f.FilePath(), Partition: PartitionDate(f.FilePath()), Rows: f.Count(), Bytes: f.FileSizeBytes()})
	}
	slices.SortFunc(out, func(a, b FileInfo) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}
