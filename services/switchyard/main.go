// Command switchyard is the operator's and developer's CLI: apply
// migrations, provision queues, and run the local stack (`dev up`) or a
// command against it (`dev exec`). Run `switchyard --help`.
package main

import (
	"context"
	"os"

	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

func main() {
	os.Exit(cli.Execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
