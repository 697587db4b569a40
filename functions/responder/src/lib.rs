//! Remedios responder: conversation memory in S3, answers from the GPT4All host, replies through the WhatsApp Cloud API
