package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/sluicehq/sluice/internal/pipeline"
	"github.com/sluicehq/sluice/internal/schema"
)

const schemasUsage = `Usage: sluice schemas [--schemas DIR] [--json]

Lists the JSON Schemas the enricher validates events against and the lake
types its columns by: event type, version, draft and file. The registry is
a directory of <event_type>/<schema_version>.json (--schemas, or schemas: in
the config file); without one, the schemas bundled for the sample data. A
directory given replaces the bundled schemas, it does not add to them.
Drafts 4, 6, 7, 2019-09 and 2020-12 are read (by $schema; 2020-12 when it
is absent), and formats (date-time, date, email, uuid, uri, ...) are
asserted. docs/schemas.md shows a complete example.
`

func runSchemas(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pipeline.NewFlagSet("schemas", schemasUsage, stderr)
	pipeline.SchemaFlags(fs)
	var asJSON bool
	fs.Bool(&asJSON, "json", "print JSON instead of a table")
	cfg, err := parse(fs, args)
	if err != nil {
		return err
	}
	reg, err := pipeline.LoadSchemas(cfg)
	if err != nil {
		return err
	}
	infos := reg.Infos()
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(infos)
	}
	from := "the bundled schemas (pass --schemas DIR for your own)"
	if cfg.Schemas != "" {
		from = cfg.Schemas
	}
	noun := "schemas"
	if len(infos) == 1 {
		noun = "schema"
	}
	fmt.Fprintf(stdout, "%d %s from %s; drafts read: %s\n\n", len(infos), noun, from, strings.Join(schema.Drafts, ", "))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT TYPE\tVERSION\tDRAFT\tPROPERTIES\tFILE")
	for _, in := range infos {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", in.EventType, in.Version, in.Draft, in.Properties, in.File)
	}
	return tw.Flush()
}
