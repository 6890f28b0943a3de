"""Config applied through the API: kept in the state folder, preferred over the folder.

`tollway up DIR` has two writers of the same resources: the folder DIR (watched) and
`tollway apply` / `tollway delete` (the API). The rule, as a kubectl user expects of a
live object and an Istio user of `kubectl apply` over a GitOps checkout:

- What the API applied wins, until the API deletes it. The folder's version of the same
  resource is *shadowed*: not applied, and reported (in `tollway up`'s output and as
  `metadata.conflict` in `tollway get`), never silently dropped or silently winning.
- `tollway delete` of an API-applied resource brings the folder's version back, if the
  folder has one: deleting an override never leaves a hole where the folder declares a
  policy (a DENY in the folder cannot vanish because its API override was deleted).
- `tollway delete` of a resource only the folder declares deletes it until the folder's
  file changes or `tollway up` restarts (the folder is its source of truth).
- The API's resources survive a restart: STATE/applied.json (0600, it may hold Secrets),
  rewritten atomically (temp file + fsync + rename) after every API write, and applied
  over the folder at start-up. If they no longer validate with the folder's resources,
  `tollway up` refuses to start and says which finding, instead of dropping them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tollway.config.findings import Finding
from tollway.config.resource import Resource
from tollway.control import auth
from tollway.control.folder import ManifestFolder
from tollway.control.store import ApplyResult, ConfigStore, Key

FILE = "applied.json"
API = "api"


def _same(a: Resource | None, b: Resource | None) -> bool:
    return (a is not None and b is not None and a.spec == b.spec and a.labels == b.labels
            and a.annotations == b.annotations)


class AppliedConfig:
    """The API's writes to the store, persisted; see the module docstring for the rule."""

    def __init__(self, state_dir: Path, store: ConfigStore,
                 folder: ManifestFolder | None = None) -> None:
        self.path = state_dir / FILE
        self.store = store
        self.folder = folder

    # ------------------------------------------------------------------ reads

    def conflicts(self) -> dict[Key, str]:
        """API-applied resources that shadow a different version in the folder."""
        if self.folder is None:
            return {}
        out: dict[Key, str] = {}
        for key in self.store.from_source(API):
            theirs = self.folder.declared(key)
            if theirs is not None and not _same(theirs, self.store.get(key)):
                out[key] = (f"shadows the folder's version ({theirs.source.file}); "
                            "`tollway delete` this one to return to the folder's")
        return out

    # ------------------------------------------------------------------ writes

    def load(self) -> ApplyResult | None:
        """Apply what the API had applied before a restart; None when there is nothing."""
        from tollway.config import load

        try:
            items = json.loads(self.path.read_text())["items"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            finding = Finding(str(self.path), 1, "", "", "",
                              f"cannot read the config applied through the API: {exc}; "
                              "repair or remove the file")
            return ApplyResult(ok=False, findings=(finding,), revision=self.store.revision)
        resources: list[Resource] = []
        findings: list[Finding] = []
        for i, item in enumerate(items):
            result = load.load_text(json.dumps(item), f"{self.path}#{i}")
            resources += result.resources
            findings += result.findings
        if any(f.is_error for f in findings):
            return ApplyResult(ok=False, findings=tuple(findings), revision=self.store.revision)
        return self.store.apply(resources, actor=API, source=API,
                                reason=f"restored from {self.path}")

    def apply(self, resources: Sequence[Resource], *, actor: str, reason: str) -> ApplyResult:
        result = self.store.apply(resources, actor=actor, reason=reason, source=API)
        if result.ok:
            self.save()
        return result

    def delete(self, keys: Iterable[Key], *, actor: str, reason: str) -> ApplyResult:
        """Delete; an API override the folder also declares goes back to the folder's."""
        back: list[Resource] = []
        gone: list[Key] = []
        for key in dict.fromkeys(keys):
            meta = self.store.meta(key)
            theirs = self.folder.declared(key) if self.folder is not None else None
            if theirs is not None and meta is not None and meta.source == API:
                back.append(theirs)
            else:
                gone.append(key)
        result = self.store.transact(back, gone, actor=actor, reason=reason, action="delete",
                                     source="folder")
        if result.ok:
            self.save()
        return result

    def save(self) -> None:
        """STATE/applied.json: every resource whose source is the API, atomically."""
        items = [dict(r.raw) for k in sorted(self.store.from_source(API))
                 if (r := self.store.get(k)) is not None]
        auth.write_secret(self.path, json.dumps({"items": items}, indent=1, default=str))
