package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/dlq"
	"github.com/sluicehq/sluice/internal/pipeline"
)

const dlqUsage = `Usage: sluice dlq list    [--stage S] [--reason R] [--since T] [--until T] [-n N] [--json]
       sluice dlq show    PARTITION/OFFSET
       sluice dlq replay  [--stage S] [--reason R] [--since T] [--until T] [--dry-run] [--by NAME]
       sluice dlq replay  PARTITION/OFFSET [--fixed FILE] [--by NAME]
       sluice dlq history [--json]

Finds the dead letters of the dead-letter topic and sends them back to the
raw topic once what failed them is mended: all those a filter selects (for
example every enrichment_failed of the last hour, after the API came back),
or one, with its original fixed (--fixed FILE, or - for standard input).

Each dead letter is sent back at most once, whoever replays it and however
often: a replay writes, in Kafka transactions, the events together with the
record of which dead letters they came from, to the replays topic, and
skips what an earlier replay sent. A replay that was interrupted is run
again to send the rest. A dead letter whose original is not a valid event
(a body that was not JSON) is reported and left until it is fixed.

--since and --until take a time (2026-12-01T10:00:00Z, 2026-12-01) or a
duration back from now (1h, 30m). Without --brokers it asks the sluice up
running on --data-dir (./sluice-data by default), else the embedded broker
at --broker-addr.
`

func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	brokers := ""
	err := dlqCommand(ctx, args, stdout, stderr, &brokers)
	if _, dial := errors.AsType[*net.OpError](err); dial && brokers != "" {
		return fmt.Errorf("%w (is Kafka running at %s? Without --brokers, sluice dlq asks the sluice up running on --data-dir, else --broker-addr)", err, brokers)
	}
	return err
}

func dlqCommand(ctx context.Context, args []string, stdout, stderr io.Writer, brokers *string) error {
	switch {
	case len(args) > 0 && (args[0] == "-h" || args[0] == "--help"):
		args = []string{"replay", "--help"} // the subcommand with the most flags
	case len(args) == 0 || strings.HasPrefix(args[0], "-"):
		fmt.Fprint(stderr, dlqUsage)
		return errUsage
	}
	sub := args[0]
	switch sub {
	case "list", "show", "replay", "history":
	default:
		fmt.Fprintf(stderr, "sluice dlq: unknown subcommand %q\n\n%s", sub, dlqUsage)
		return errUsage
	}
	fs := pipeline.NewFlagSet("dlq "+sub, dlqUsage, stderr)
	pipeline.BrokerFlags(fs, "broker-addr")
	pipeline.ProcessFlags(fs, "data-dir")
	pipeline.TopicFlags(fs, "topic-raw", "topic-dlq", "topic-replays")
	var (
		f            dlq.Filter
		since, until string
		n            = 20
		asJSON, dry  bool
		by, fixed    string
		batch        = 500
	)
	if sub == "list" || sub == "replay" {
		fs.String(&f.Stage, "stage", "only dead letters of this stage: collector, enricher, aggregator or loader")
		fs.String(&f.Reason, "reason", "only dead letters of this reason, such as enrichment_failed")
		fs.String(&since, "since", "only dead letters written since this time, or this long ago (1h)")
		fs.String(&until, "until", "only dead letters written before this time, or this long ago")
	}
	switch sub {
	case "list":
		fs.Int(&n, "n", "how many to print at most (0: all)")
		fs.Bool(&asJSON, "json", "print JSON lines, whole, instead of a table")
	case "history":
		fs.Bool(&asJSON, "json", "print JSON lines, with every dead letter sent, instead of a table")
	case "replay":
		fs.Bool(&dry, "dry-run", "say what would be sent, and send nothing")
		fs.String(&by, "by", "who replays, for the record (default: the user and host)")
		fs.Int(&batch, "batch", "dead letters sent per Kafka transaction")
		fs.String(&fixed, "fixed", "with PARTITION/OFFSET: a file (- for standard input) holding the fixed event to send instead of the original")
	}
	logFlags(fs)
	pipeline.KafkaFlags(fs)
	cfg, logger, err := setup(fs, args[1:], stderr)
	if err != nil {
		return err
	}
	now := time.Now()
	if f.Since, err = dlq.ParseWhen(since, now); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if f.Until, err = dlq.ParseWhen(until, now); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	cfg.BrokersOrLocal()
	*brokers = strings.Join(cfg.Kafka.Brokers, ",")
	r := dlq.New(cfg.Client("sluice-dlq"), dlq.Topics{DLQ: cfg.Topics.DLQ, Raw: cfg.Topics.Raw, Log: cfg.Topics.Replays,
		Replication: cfg.Topics.Replication}, logger)
	rest := fs.Args()
	switch sub {
	case "list":
		return listDeadLetters(ctx, r, f, n, asJSON, stdout)
	case "show":
		if len(rest) != 1 {
			return fmt.Errorf("%w: sluice dlq show PARTITION/OFFSET", errUsage)
		}
		c, err := dlq.ParseCoord(rest[0])
		if err != nil {
			return err
		}
		dl, err := r.Get(ctx, c)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(dl)
	case "history":
		return replayHistory(ctx, r, asJSON, stdout)
	}
	if by == "" {
		by = whoami()
	}
	opts := dlq.Options{By: by, DryRun: dry, Batch: batch, Progress: progressTo(stderr)}
	var rep dlq.Report
	switch len(rest) {
	case 0:
		if fixed != "" {
			return fmt.Errorf("%w: --fixed needs the dead letter's PARTITION/OFFSET", errUsage)
		}
		rep, err = r.Replay(ctx, f, opts)
	case 1:
		c, perr := dlq.ParseCoord(rest[0])
		if perr != nil {
			return perr
		}
		if fixed != "" {
			b, rerr := readFixed(fixed)
			if rerr != nil {
				return rerr
			}
			opts.Fixed = map[dlq.Coord][]byte{c: b}
		}
		rep, err = r.ReplayOne(ctx, c, opts)
	default:
		return fmt.Errorf("%w: one PARTITION/OFFSET at most", errUsage)
	}
	if err != nil {
		if rep.Replayed > 0 {
			fmt.Fprintf(stderr, "sent %d before the error; run it again to send the rest\n", rep.Replayed)
		}
		return err
	}
	verb := "replayed"
	if rep.DryRun {
		verb = "would replay"
	}
	fmt.Fprintf(stdout, "matched %d dead letters: %s %d, %d already replayed, %d to fix first\n",
		rep.Matched, verb, rep.Replayed, rep.AlreadyReplayed, len(rep.Unreplayable))
	if rep.ID != "" {
		fmt.Fprintf(stdout, "replay %s by %s into %s\n", rep.ID, by, cfg.Topics.Raw)
	}
	for _, u := range rep.Unreplayable {
		fmt.Fprintf(stdout, "  %s: %s ('sluice dlq show %s', then 'sluice dlq replay %s --fixed FILE')\n", u.Coord, u.Reason, u.Coord, u.Coord)
	}
	return nil
}

func listDeadLetters(ctx context.Context, r *dlq.Replayer, f dlq.Filter, n int, asJSON bool, stdout io.Writer) error {
	var tw *tabwriter.Writer
	enc := json.NewEncoder(stdout)
	if !asJSON {
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEAD LETTER\tWRITTEN\tSTAGE\tREASON\tROOT ID\tREPLAYED IN\tFIRST ERROR")
	}
	count := 0
	var werr error
	err := r.Scan(ctx, f, func(dl *dlq.DeadLetter) bool {
		count++
		if asJSON {
			werr = enc.Encode(dl)
		} else {
			first := ""
			if len(dl.Errors) > 0 {
				first = strings.TrimPrefix(dl.Errors[0].Path+": ", ": ") + dl.Errors[0].Message
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dl.Coord, dl.Time.Format(time.RFC3339), dl.Stage, dl.Reason,
				dl.RootID, dl.ReplayedIn, truncateText(first, 80))
		}
		return werr == nil && (n <= 0 || count < n)
	})
	if tw != nil && err == nil {
		tw.Flush()
	}
	return errors.Join(err, werr)
}

func replayHistory(ctx context.Context, r *dlq.Replayer, asJSON bool, stdout io.Writer) error {
	replays, err := r.Replays(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, rp := range replays {
			if err := enc.Encode(rp); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLAY\tAT\tBY\tDEAD LETTERS\tFIXED\tFILTER")
	for _, rp := range replays {
		fixedN := 0
		for _, s := range rp.DeadLetters {
			if s.Fixed {
				fixedN++
			}
		}
		filter := "one dead letter"
		if rp.Filter != nil {
			b, _ := json.Marshal(rp.Filter)
			filter = string(b)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", rp.ID, rp.At.Format(time.RFC3339), rp.By, len(rp.DeadLetters), fixedN, filter)
	}
	return tw.Flush()
}

func readFixed(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--fixed: %w", err)
	}
	return b, nil
}

func whoami() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if host, err := os.Hostname(); err == nil {
		name += "@" + host
	}
	return name
}

// progressTo draws a replay's progress on w, a bar per transaction
// committed, when w is a terminal.
func progressTo(w io.Writer) func(sent, total int) {
	if !pipeline.IsTerminal(w) {
		return nil
	}
	return func(sent, total int) {
		const width = 24
		n := width * sent / max(total, 1)
		fmt.Fprintf(w, "\r\x1b[2Ksent %s %d of %d dead letters", strings.Repeat("█", n)+strings.Repeat("·", width-n), sent, total)
		if sent == total {
			fmt.Fprintln(w)
		}
	}
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
