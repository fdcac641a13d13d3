package jobs

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/lake"
)

// Dedupe is a model's {{ dedupe('table', lookback='7d') }}: the rows of an
// event table without its duplicates by event_id. Copies of an event with
// the same content (a client that sent it again, a replay) are natural
// duplicates: the first to arrive stays. Events whose copies differ share
// an id they should not (synthetic duplicates): none of them can be
// trusted to be the event, so all are left out, and reported by the
// model's check synthetic_duplicates in dq_failures. Events without an
// event_id are kept as they are.
type Dedupe struct {
	Source string
	// Lookback is how many days before a run's first event date copies
	// are looked for.
	Lookback int
}

// defaultDedupeLookback is the days a duplicate is looked for before the
// dates a run rebuilds.
const defaultDedupeLookback = 7

// checkSyntheticDuplicates names the check that reports the events whose
// copies differ.
const checkSyntheticDuplicates = "synthetic_duplicates"

// envelopeColumns are what the collector adds to an event: copies of one
// event differ in them and are still the same event.
var envelopeColumns = []string{event.FieldRootID, event.FieldCollectorTstamp, event.FieldCollectorID, lake.EventDate}

// expandDedupe writes the model's {{ dedupe() }} as SQL over its source's
// columns, and adds the check that reports synthetic duplicates.
func (r *Runner) expandDedupe(ctx context.Context, m Model) (Model, error) {
	d := m.Dedupe
	cols, err := r.eng.Describe(ctx, "SELECT * FROM "+quoteIdent(d.Source))
	if err != nil {
		return m, fmt.Errorf("model %s: dedupe %s: %w", m.Name, d.Source, err)
	}
	names := columnNames(cols)
	for _, need := range []string{event.FieldEventID, event.FieldRootID, event.FieldCollectorTstamp, lake.EventDate} {
		if !slices.Contains(names, need) {
			return m, fmt.Errorf("model %s: dedupe %s: the table has no %s column (events are deduplicated by the event_id their producers give)", m.Name, d.Source, need)
		}
	}
	var content []string
	for _, c := range names {
		if c != event.FieldEventID && !slices.Contains(envelopeColumns, c) {
			content = append(content, quoteIdent(c)+" := "+quoteIdent(c))
		}
	}
	// Copies are looked for from lookback days before the first date
	// rebuilt; the model's range keeps the rows of its own dates.
	ranked := fmt.Sprintf(`WITH src__ AS (
	SELECT *, md5(CAST(to_json(struct_pack(%s)) AS VARCHAR)) AS fingerprint__ FROM %s
	WHERE %s >= {{ start }} - INTERVAL %d DAY AND %s < {{ end }}
), ranked__ AS (
	SELECT *, count(DISTINCT fingerprint__) OVER (PARTITION BY %s) AS versions__,
		row_number() OVER (PARTITION BY %s, fingerprint__ ORDER BY %s, %s) AS copy__
	FROM src__
)`, strings.Join(content, ", "), quoteIdent(d.Source), lake.EventDate, d.Lookback, lake.EventDate,
		event.FieldEventID, event.FieldEventID, event.FieldCollectorTstamp, event.FieldRootID)
	kept := fmt.Sprintf("(%s SELECT * EXCLUDE (fingerprint__, versions__, copy__) FROM ranked__ WHERE %s IS NULL OR (versions__ = 1 AND copy__ = 1))",
		ranked, event.FieldEventID)
	m.SQL = dedupeTag.ReplaceAllLiteralString(m.SQL, kept)
	m.Checks = append(slices.Clone(m.Checks), Check{Name: checkSyntheticDuplicates, Type: CheckExpression, Severity: SeverityWarn,
		SQL: fmt.Sprintf("%s SELECT * EXCLUDE (fingerprint__, versions__, copy__) FROM ranked__ WHERE %s IS NOT NULL AND versions__ > 1", ranked, event.FieldEventID)})
	return m, nil
}
