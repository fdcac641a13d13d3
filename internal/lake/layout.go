package lake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// DeadLetterTable is the table of failed events from every stage.
const DeadLetterTable = "dead_letter"

// File is one data file of a table, named by the offset range it holds.
type File struct {
	Table     string
	Date      string // YYYY-MM-DD
	Topic     string
	Partition int32
	First     int64
	Last      int64
	Ext       string // "parquet", "csv.gz" or "avro"
}

// Path is the file's path in the lake.
func (f File) Path() string {
	return fmt.Sprintf("%s/event_date=%s/%s-%d-%d-%d.%s", f.Table, f.Date, f.Topic, f.Partition, f.First, f.Last, f.Ext)
}

var fileRE = regexp.MustCompile(`^([^/]+)/event_date=(\d{4}-\d{2}-\d{2})/(.+)-(\d+)-(\d+)-(\d+)\.(parquet|csv\.gz|avro)$`)

// ParseFile reads a data file's path; ok is false for anything else.
func ParseFile(p string) (f File, ok bool) {
	m := fileRE.FindStringSubmatch(p)
	if m == nil {
		return File{}, false
	}
	part, err1 := strconv.ParseInt(m[4], 10, 32)
	first, err2 := strconv.ParseInt(m[5], 10, 64)
	last, err3 := strconv.ParseInt(m[6], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return File{}, false
	}
	return File{Table: m[1], Date: m[2], Topic: m[3], Partition: int32(part), First: first, Last: last, Ext: m[7]}, true
}

// TableName turns an event type into a table name: snake_case, letters,
// digits and underscores only, never empty and never starting with a digit
// or an underscore (names starting with _ are the lake's own).
func TableName(eventType string) string {
	var b strings.Builder
	prevLower := false
	for _, r := range eventType {
		switch {
		case unicode.IsUpper(r):
			if prevLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			prevLower = false
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(unicode.ToLower(r))
			prevLower = true
		default:
			if s := b.String(); s != "" && !strings.HasSuffix(s, "_") {
				b.WriteByte('_')
			}
			prevLower = false
		}
	}
	name := strings.Trim(b.String(), "_")
	if name == "" {
		return "unnamed"
	}
	if name[0] >= '0' && name[0] <= '9' {
		name = "t_" + name
	}
	return name
}

// Progress is a loader's record of one topic-partition in the lake: the
// last offset whose data is durable, and the range of a flush that was
// started but not finished. Keeping it in the lake, beside the data, makes
// the lake the truth for how far a load got, as Kafka Connect's sinks do;
// the pending range makes a flush that writes several tables' files
// all-or-nothing, as Connect's HDFS write-ahead log does.
type Progress struct {
	// Committed is the last offset loaded, or -1 when none is.
	Committed int64 `json:"committed"`
	// Pending is a flush in progress: its files may be partly written. A
	// restart reloads exactly this range, rewriting the same file names.
	Pending *Range `json:"pending,omitempty"`
	// Epoch counts the times the topic was found deleted and made again.
	// Each time its offsets start again from 0, so the lake names the
	// topic of epoch n > 0 Incarnation(topic, n): in its data files and
	// in the tables' offsets, which then never meet the earlier ones.
	Epoch int `json:"epoch,omitempty"`
}

// Incarnation is how the lake names epoch n of a topic: the topic itself
// first, then topic~n ('~' is in no Kafka topic name).
func Incarnation(topic string, epoch int) string {
	if epoch == 0 {
		return topic
	}
	return topic + "~" + strconv.Itoa(epoch)
}

// ParseIncarnation reads a name Incarnation made; ok is false for a name
// of another topic.
func ParseIncarnation(name, topic string) (epoch int, ok bool) {
	if name == topic {
		return 0, true
	}
	rest, found := strings.CutPrefix(name, topic+"~")
	if !found {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n > 0
}

// Range is an inclusive offset range.
type Range struct {
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

func progressPath(topic string, partition int32) string {
	return path.Join("_sluice", "progress", topic, strconv.Itoa(int(partition))+".json")
}

// ReadProgress reads a topic-partition's progress; a partition never loaded
// has Committed -1.
func ReadProgress(ctx context.Context, s Storage, topic string, partition int32) (Progress, error) {
	b, err := s.ReadObject(ctx, progressPath(topic, partition))
	if errors.Is(err, ErrNotExist) {
		return Progress{Committed: -1}, nil
	}
	if err != nil {
		return Progress{}, fmt.Errorf("read progress of %s/%d: %w", topic, partition, err)
	}
	var p Progress
	if err := json.Unmarshal(b, &p); err != nil {
		return Progress{}, fmt.Errorf("progress of %s/%d is corrupt: %w", topic, partition, err)
	}
	return p, nil
}

// WriteProgress replaces a topic-partition's progress atomically.
func WriteProgress(ctx context.Context, s Storage, topic string, partition int32, p Progress) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := PutBytes(ctx, s, progressPath(topic, partition), b); err != nil {
		return fmt.Errorf("progress of %s/%d: %w", topic, partition, err)
	}
	return nil
}

// Tables lists the lake's tables and their data files.
func Tables(ctx context.Context, s Storage) (map[string][]Object, error) {
	objs, err := s.List(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make(map[string][]Object)
	for _, o := range objs {
		if f, ok := ParseFile(o.Path); ok {
			out[f.Table] = append(out[f.Table], o)
		}
	}
	return out, nil
}
