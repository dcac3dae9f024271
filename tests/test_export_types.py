"""export_types: the unified catalog as TypeScript, compiled by the real TypeScript compiler."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db(databases=["default", "unified"])

SAMPLE = """
import type { Database, Tables, TablesInsert } from "./database"

type Lead = Database["public"]["Tables"]["lead"]["Row"]
type CartridgeInsert = Database["public"]["Tables"]["cartridge"]["Insert"]

export function describe(lead: Lead): string {
  const app: "audience" | "revos" | "both" = lead.app_context
  return `${lead.id} ${lead.status} ${app} ${lead.email ?? "no email"}`
}

export const cartridge: CartridgeInsert = {
  agency_id: "00000000-0000-0000-0000-000000000001",
  name: "House voice",
  type: "voice",
  app_context: "revos",
  config: { tone: "warm", examples: ["one", 2, null] },
}
export const short: TablesInsert<"cartridge"> = { agency_id: "a", name: "n", type: "brand", config: {} }
export const status = (row: Tables<"lead">) => row.status

// @ts-expect-error app_context takes only the values its CHECK lists
export const wrong: CartridgeInsert = { agency_id: "a", name: "n", type: "voice", config: {}, app_context: "elsewhere" }

export const toggle: Database["public"]["Functions"]["switch_app"]["Args"] = { app_context: "audience" }
"""


def typescript_compiler() -> str | None:
    """The compiler `make install` installs (npm package typescript), else one on PATH."""
    local = Path(settings.BASE_DIR) / ".tools" / "typescript" / "node_modules" / ".bin" / "tsc"
    return str(local) if local.exists() else shutil.which("tsc")


def export(tmp_path: Path) -> str:
    out = tmp_path / "database.ts"
    call_command("export_types", "--out", str(out))
    return out.read_text()


def test_types_have_supabases_shape_with_check_listed_values_as_unions(tmp_path):
    types = export(tmp_path)
    lead = types[types.index("      lead: {") :]
    row, insert = lead[: lead.index("Insert:")], lead[lead.index("Insert:") : lead.index("Update:")]
    assert 'app_context: "audience" | "revos" | "both"' in row
    assert 'status: "new" | "contacted" | "replied" | "qualified" | "converted" | "lost"' in row
    assert "email: string | null" in row
    assert "id?: string" in insert and "agency_id: string" in insert, "defaults are optional, the rest required"
    assert "switch_app: {" in types and "Args: { app_context: string }" in types
    assert "custom_access_token_hook" not in types, "only what the apps' role may call"


def test_export_types_output_compiles_with_the_typescript_compiler(tmp_path):
    compiler = typescript_compiler()
    if compiler is None:
        npm = "npm is installed" if shutil.which("npm") else "npm is not installed"
        pytest.skip(f"no TypeScript compiler: `make install` installs it with npm where npm exists ({npm})")
    export(tmp_path)
    (tmp_path / "sample.ts").write_text(SAMPLE)
    command = [compiler, "--noEmit", "--strict", "--target", "es2020", "--module", "es2020"]
    command += ["--moduleResolution", "bundler", "sample.ts", "database.ts"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # The unused @ts-expect-error would fail the build if the union let "elsewhere" through.
    (tmp_path / "sample.ts").write_text(SAMPLE.replace('app_context: "elsewhere"', 'app_context: "revos"'))
    refused = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "TS2578" in refused.stdout


def test_export_types_refuses_a_missing_folder(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("export_types", "--out", str(tmp_path / "missing" / "database.ts"))
