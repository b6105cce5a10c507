package app

import "github.com/switchyard/switchyard/libs/jobmessage"

// Unmarshaler reads SQS messages into Watermill messages without ever
// failing on one someone else sent (see jobmessage.Unmarshaler, which owns
// the job message's SQS form).
type Unmarshaler = jobmessage.Unmarshaler
