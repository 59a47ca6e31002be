#!/usr/bin/env python3
"""Verifies Standard Webhooks deliveries with the PyPI `standardwebhooks` package, an
implementation independent of Corral's, so the Rust signing is checked against
someone else's reading of the spec.

stdin:  {"secret": "whsec_...", "deliveries": [{"headers": {...}, "body": "..."}]}
stdout: {"results": [true, false, ...]}

Only a failed verification counts as false; any other error (bad input, a missing
package) exits non-zero so a broken harness cannot pass for a failed signature.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> int:
    request = json.load(sys.stdin)
    hook = Webhook(request["secret"])
    results = []
    for delivery in request["deliveries"]:
        try:
            # json_parse=False: the question is the signature, not whether the body
            # happens to be JSON.
            hook.verify(delivery["body"], delivery["headers"], json_parse=False)
            results.append(True)
        except WebhookVerificationError:
            results.append(False)
    json.dump({"results": results}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
