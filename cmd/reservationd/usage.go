package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// helpWidth is the widest line of `reservationd help`: it fits a terminal of 100 columns.
const helpWidth = 100

// isHelp reports whether arg asks for the help, as rsvctl takes it: the help command, or
// --help/-h anywhere on the line (flag also takes a single dash).
func isHelp(arg string) bool {
	switch arg {
	case "help", "--help", "-help", "-h":
		return true
	}
	return false
}

// commandsHelp lists the subcommands, first in the help: what the binary does, before how to
// tune it.
const commandsHelp = `reservationd serves the reservation gRPC API, its HTTP/JSON gateway and the timeline page.

Usage:
  reservationd [flags]           migrate the schema (unless --migrate=false), then serve
  reservationd migrate [flags]   migrate the schema and exit
  reservationd health [flags]    exit 0 if the replica on --grpc-addr is SERVING, 1 if not
  reservationd export status|reset [flags]
                                 the export to NATS JetStream: where it is; a halted one reset
  reservationd --version         print the build: version, VCS revision, Go version
  reservationd help              print this help (also --help, -h)

Required:
  --mysql-dsn (RESERVATION_MYSQL_DSN), e.g. root@tcp(127.0.0.1:3306)/reservation
  --redis-addr (RESERVATION_REDIS_ADDR) for --lock redis, the default; 127.0.0.1:6379 if unset

Example:
  reservationd --mysql-dsn 'root@tcp(127.0.0.1:3306)/reservation' --lock local

Each flag falls back to the environment variable named after it; a flag on the line wins.
The Redis password comes from RESERVATION_REDIS_PASSWORD or --redis-password-file.

Flags:
`

// printUsage writes the help: the subcommands, the required settings, then every flag of c
// with its environment variable and default, wrapped to helpWidth columns.
func printUsage(w io.Writer, c *Config) {
	fmt.Fprint(w, commandsHelp)
	c.flags().VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		head := "  --" + f.Name
		if kind != "" {
			head += " " + kind
		}
		text := usage + " (" + envName(f.Name)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			text += "; default " + f.DefValue
		}
		text += ")"
		fmt.Fprintln(w, head)
		for _, line := range wrap(text, helpWidth-6) {
			fmt.Fprintln(w, "      "+line)
		}
	})
}

// wrap breaks text into lines of at most width characters at spaces (a word longer than width
// stands alone on its line).
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
