"""TEST DOUBLE of Grafeas v1 / Container Analysis' REST API, for the `grafeas` storage backend.

No Grafeas server can run here (Google's Container Analysis is a service; the open-source
Grafeas server is not served by any package registry this project builds from), so this serves
the calls Signet makes and the reads the tests make, parsing every request body with the
generated types of Google's published Grafeas v1 protos (PyPI `grafeas`, proto-plus): a field
the protos do not have, or a value of the wrong type, is refused with 400 INVALID_ARGUMENT, as
the API would. What it stores and answers is the parsed message written out again through
those types (as the service stores messages, not the client's bytes).

  POST /v1/projects/P/notes?noteId=N       create a note (409 ALREADY_EXISTS if it exists)
  GET  /v1/projects/P/notes/N              read it
  POST /v1/projects/P/occurrences          create an occurrence of an existing note
  GET  /v1/projects/P/occurrences[?filter=resourceUrl="…"]   list them

Every call needs a bearer token the Google double issued (asked at its /v1/tokeninfo, as
Google's frontends check tokens). Keeps everything in memory. Listens on 127.0.0.1 with TLS.
"""

import argparse
import json
import ssl
import sys
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from grafeas.grafeas_v1.types import grafeas as g


def canonical(message_type, message):
    """What the API stores and answers for a parsed `message`: its JSON through Grafeas' own
    types (enum names, no unknown fields, camelCase), not the bytes the client sent."""
    try:
        text = message_type.to_json(message, use_integers_for_enums=False)
    except TypeError:  # an older proto-plus
        text = message_type.to_json(message)
    return json.loads(text)


def parse(message_type, body):
    """The request body as `message_type`, or the reason it is not one."""
    try:
        return message_type.from_json(body.decode() or "{}", ignore_unknown_fields=False), None
    except Exception as e:  # json_format.ParseError, UnicodeDecodeError, ValueError
        return None, str(e).splitlines()[0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.command, self.path))

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, code, message):
        return self.reply(status, {"error": {"code": status, "status": code, "message": message}})

    def authorized(self):
        auth = self.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return False
        token = auth[7:]
        if token in self.server.valid:
            return True
        url = self.server.tokeninfo + "?" + urllib.parse.urlencode({"access_token": token})
        try:
            with urllib.request.urlopen(url, context=self.server.client_tls, timeout=10):
                self.server.valid.add(token)
                return True
        except Exception:
            return False

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def route(self, method):
        url = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length) if length else b""
        if not self.authorized():
            return self.error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        parts = url.path.strip("/").split("/")
        if len(parts) < 4 or parts[0] != "v1" or parts[1] != "projects":
            return self.error(404, "NOT_FOUND", url.path)
        project = "projects/" + parts[2]
        notes, occurrences = self.server.notes, self.server.occurrences
        if parts[3] == "notes" and method == "POST" and len(parts) == 4:
            note_id = query.get("noteId", "")
            if not note_id:
                return self.error(400, "INVALID_ARGUMENT", "noteId is required")
            note, problem = parse(g.Note, body)
            if problem:
                return self.error(400, "INVALID_ARGUMENT", problem)
            name = "%s/notes/%s" % (project, note_id)
            if name in notes:
                return self.error(409, "ALREADY_EXISTS", "Note %s already exists" % name)
            stored = canonical(g.Note, note)
            stored["name"] = name
            stored["kind"] = (g.Note.pb(note).WhichOneof("type") or "").upper()
            stored["createTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            notes[name] = stored
            return self.reply(200, stored)
        if parts[3] == "notes" and method == "GET" and len(parts) == 5:
            name = "%s/notes/%s" % (project, parts[4])
            return self.reply(200, notes[name]) if name in notes else self.error(404, "NOT_FOUND", name)
        if parts[3] == "occurrences" and method == "POST" and len(parts) == 4:
            occurrence, problem = parse(g.Occurrence, body)
            if problem:
                return self.error(400, "INVALID_ARGUMENT", problem)
            stored = canonical(g.Occurrence, occurrence)
            note = notes.get(stored.get("noteName", ""))
            if note is None:
                return self.error(400, "INVALID_ARGUMENT", "note %r does not exist" % stored.get("noteName"))
            details = g.Occurrence.pb(occurrence).WhichOneof("details") or ""
            if details.upper() != note["kind"]:
                return self.error(400, "INVALID_ARGUMENT", "a %s occurrence of a %s note" % (details, note["kind"]))
            if not stored.get("resourceUri"):
                return self.error(400, "INVALID_ARGUMENT", "resourceUri is required")
            stored["name"] = "%s/occurrences/%s" % (project, uuid.uuid4())
            stored["kind"] = note["kind"]
            stored["createTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            occurrences.append(stored)
            return self.reply(200, stored)
        if parts[3] == "occurrences" and method == "GET" and len(parts) == 4:
            listed = [o for o in occurrences if o["name"].startswith(project + "/")]
            wanted = query.get("filter", "")
            if wanted:
                if not (wanted.startswith('resourceUrl="') and wanted.endswith('"')):
                    return self.error(400, "INVALID_ARGUMENT", "only resourceUrl=\"…\" filters here")
                listed = [o for o in listed if o["resourceUri"] == wanted[len('resourceUrl="'):-1]]
            return self.reply(200, {"occurrences": listed})
        return self.error(400, "INVALID_ARGUMENT", method + " " + url.path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--tokeninfo", required=True, help="the Google double's /v1/tokeninfo URL")
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.notes, server.occurrences, server.valid = {}, [], set()
    server.tokeninfo = args.tokeninfo
    server.client_tls = ssl.create_default_context(cafile=args.ca)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
