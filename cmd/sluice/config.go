package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/pipeline"
)

const configUsage = `Usage: sluice config check FILE
       sluice config print [--config FILE] [flags]
       sluice config docs

check reports every error of a config file, each with its YAML path (such
as sinks[0].flush_rows), and exits 1 when there is any. print writes the
effective configuration, after the file, the SLUICE_* environment and the
flags, as YAML, secrets masked. docs writes the reference of every setting
(docs/configuration.md).
`

func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, configUsage)
		return errUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, configUsage)
		return nil
	case "check":
		if len(args) != 2 {
			fmt.Fprint(stderr, configUsage)
			return errUsage
		}
		cfg, err := pipeline.Load(args[1])
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			errs := config.Errors(err)
			for _, e := range errs {
				msg := strings.TrimPrefix(e.Error(), "config "+args[1]+": ")
				fmt.Fprintf(stdout, "%s: %s\n", args[1], msg)
			}
			return fmt.Errorf("%s: %d error(s)", args[1], len(errs))
		}
		fmt.Fprintf(stdout, "%s: ok\n", args[1])
		return nil
	case "print":
		fs := pipeline.NewFlagSet("config print", configUsage, stderr)
		pipeline.ProcessFlags(fs)
		pipeline.OpsFlags(fs)
		pipeline.ConsoleFlags(fs)
		pipeline.BrokerFlags(fs)
		pipeline.KafkaFlags(fs)
		pipeline.TopicFlags(fs)
		pipeline.CollectorFlags(fs)
		pipeline.ProducerFlags(fs)
		pipeline.LakeFlags(fs)
		pipeline.SinkFlags(fs, "*", "flush-rows", "flush-bytes", "flush-interval", "loader-memory")
		pipeline.EnricherFlags(fs)
		pipeline.SchemaFlags(fs)
		cfg, err := parse(fs, args[1:])
		if err != nil {
			return err
		}
		if err := cfg.Write(stdout); err != nil {
			return err
		}
		if err := cfg.Validate(); err != nil {
			for _, e := range config.Errors(err) {
				fmt.Fprintf(stderr, "%v\n", e)
			}
			return errors.New("the configuration above is not valid")
		}
		return nil
	case "docs":
		return pipeline.WriteReference(stdout)
	}
	fmt.Fprintf(stderr, "sluice config: unknown subcommand %q\n\n%s", args[0], configUsage)
	return errUsage
}
