"""Synthetic demo data: RevOS source tenants and the AudienceOS baseline, deterministic per seed.

The RevOS rows follow sql/revos/0001; the AudienceOS rows are what the unified database holds for
AudienceOS after sql/unified/0002-0008 (cartridges as 0005 leaves them: app_context 'audience',
chat messages answered by 'gemini' as 0006 marks them; every other app_context is the column's
default, as it was for the rows that existed when 0004 added it).

Determinism without memory: every id is a hash of (seed, agency, table, row number), so a child row
names its parent by the parent's row number and nothing has to be remembered between tables; every
table of every agency draws from its own `random.Random` seeded by the same path, so the content
does not depend on the order tables are written in. Timestamps derive from a fixed base, never now().
The rows are data: per table, its columns and the rule that fills each (`REVOS_TABLES`,
`UNIFIED_TABLES`), read by one generator (`_Rows`) that streams them straight into `COPY`:
`--scale 1000` (an agency of about a million rows) runs in the same memory as `--scale 1`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar, cast

import bcrypt
import psycopg
from django.db import connections, transaction
from django.utils.text import slugify
from psycopg import sql

from migration_jobs.demo.phase0 import phase0_problems_plant
from migration_jobs.etl.catalog import table_identifier
from migration_jobs.etl.connections import fetch_value
from migration_jobs.services.database_marks import DatabaseNotMarked, demo_databases_claim

BASE_TIME = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
SPAN_SECONDS = 365 * 86400

LEAD_STATUSES = ("new", "contacted", "replied", "qualified", "converted", "lost")
DM_DIRECTIONS = ("inbound", "outbound")

FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam",
    "Maya", "Nikhil", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Xavi",
    "Yara", "Zoe", "Arjun", "Bea", "Carlos", "Dana", "Emeka", "Fiona",
)  # fmt: skip
LAST_NAMES = (
    "Adams", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Jensen", "Khan",
    "Lopez", "Mensah", "Novak", "Okafor", "Park", "Quispe", "Rossi", "Singh", "Tanaka", "Ueda",
    "Varga", "Weber", "Xu", "Yilmaz", "Zhang", "Moreau", "Silva", "Kowalski", "Nguyen",
)  # fmt: skip
AGENCY_WORDS = (
    "Northwind", "Bluepeak", "Brightline", "Cobalt", "Driftwood", "Evergreen", "Foxglove", "Granite",
    "Harbor", "Ironwood", "Juniper", "Keystone", "Lighthouse", "Meridian", "Nimbus", "Oakridge",
    "Pinecrest", "Quarry", "Redwood", "Summit", "Tidewater", "Upland", "Vantage", "Westbrook",
)  # fmt: skip
AGENCY_KINDS = ("Media", "Growth", "Digital", "Partners", "Labs", "Collective", "Studio", "Outreach")
COMPANY_WORDS = (
    "Acme", "Apex", "Atlas", "Beacon", "Cascade", "Crescent", "Delta", "Echo", "Falcon", "Frontier",
    "Glacier", "Horizon", "Indigo", "Jade", "Kinetic", "Lumen", "Magnolia", "Nova", "Orbit", "Pioneer",
    "Quantum", "Radiant", "Sequoia", "Solstice", "Titan", "Unity", "Vertex", "Willow", "Zenith", "Zephyr",
)  # fmt: skip
COMPANY_KINDS = (
    "Logistics", "Health", "Software", "Foods", "Capital", "Energy", "Robotics", "Dental", "Fitness",
    "Legal", "Realty", "Analytics", "Apparel", "Travel", "Insurance", "Print", "Solar", "Coffee",
)  # fmt: skip
LEGAL_SUFFIXES = ("Inc", "LLC", "Ltd", "GmbH")
TLDS = ("com", "io", "co", "agency")
TOPICS = (
    "pipeline hygiene", "cold outreach", "founder-led sales", "content cadence", "B2B SEO",
    "hiring SDRs", "pricing pages", "webinar funnels", "account-based marketing", "churn",
)  # fmt: skip
TRIGGER_WORDS = ("GUIDE", "PLAYBOOK", "TEMPLATE", "CHECKLIST", "SCRIPT", "DECK")
COMMENT_LINES = (
    "Great point!", "This is spot on.", "Interested", "Send it over please", "Following",
    "We tried this last quarter, worked well.", "Would love the template", "Agree 100%",
)  # fmt: skip
PERMISSIONS = tuple(
    (role, resource, "manage" if role != "member" else "read")
    for role in ("owner", "admin", "member")
    for resource in ("clients", "campaigns", "reports", "settings")
)


class DemoDataError(Exception):
    """The demo data cannot be written as asked; the message says why and what to do."""


@dataclass(frozen=True)
class DemoAgency:
    """One seeded agency: its RevOS row, its AudienceOS row, or both (the same firm in two apps)."""

    revos_id: uuid.UUID | None
    revos_name: str | None
    unified_id: uuid.UUID | None
    unified_name: str | None

    @property
    def kind(self) -> str:
        if self.revos_id and self.unified_id:
            return "both"
        return "revos" if self.revos_id else "audience"


@dataclass
class DemoSummary:
    """Rows written per table ("revos.posts", "unified.client", ...) and the agencies seeded."""

    rows: Counter[str] = field(default_factory=Counter)
    agencies: list[DemoAgency] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


# ---------------------------------------------------------------------------------------------
# Agencies: derived ids, counts, names


@dataclass(frozen=True)
class _Table:
    """One table to fill: its columns, its rows per agency at scale 1, and its row generator."""

    name: str
    columns: tuple[str, ...]  # what each row carries, in this order
    base: int
    rows: Callable[..., Iterator[tuple]]
    scaled: bool = True

    def count(self, scale: float) -> int:
        return max(1, round(self.base * scale)) if self.scaled else self.base


class _Tenant:
    """One agency in one app: the namespace its ids and random streams derive from."""

    agency_table: str  # its app's table of agencies

    def __init__(self, *, key: str, scale: float, tables: Sequence[_Table], name: str) -> None:
        self.key = key
        self.name = name
        self.counts = {table.name: table.count(scale) for table in tables}

    def id(self, table: str, index: int) -> uuid.UUID:
        digest = hashlib.blake2b(f"{self.key}/{table}/{index}".encode(), digest_size=16).digest()
        return uuid.UUID(bytes=digest, version=4)

    def n(self, table: str) -> int:
        return self.counts[table]

    def pick(self, rng: random.Random, table: str) -> uuid.UUID:
        return self.id(table, rng.randrange(self.counts[table]))

    def rng(self, table: str) -> random.Random:
        return random.Random(f"{self.key}/{table}")

    def agency_id(self) -> uuid.UUID:
        """The id of its row in its app's agency table."""
        return self.id(self.agency_table, 0)


class _RevosAgency(_Tenant):
    agency_table = "agencies"
    domain: str | None
    mail_domain: str


class _AudienceAgency(_Tenant):
    agency_table = "agency"
    domain: str
    slug: str
    twin: _RevosAgency | None
    shared_users: int
    shared_clients: int


def _stamp(row_id: uuid.UUID) -> datetime:
    """A row's creation time, derived from its id so that children can be dated after it."""
    return BASE_TIME + timedelta(seconds=(row_id.int >> 64) % SPAN_SECONDS)


def _later(moment: datetime, rng: random.Random, hours: int = 72) -> datetime:
    return moment + timedelta(seconds=rng.randrange(60, hours * 3600))


T = TypeVar("T")


def _maybe(rng: random.Random, null_share: float, value: T) -> T | None:
    """`value`, or NULL for about `null_share` of the rows (the dirt real data has)."""
    return None if rng.random() < null_share else value


def _person(row_id: uuid.UUID) -> tuple[str, str]:
    bits = row_id.int
    return FIRST_NAMES[bits % len(FIRST_NAMES)], LAST_NAMES[(bits >> 8) % len(LAST_NAMES)]


def _company(index: int, offset: int) -> str:
    """A company name unique per index within one agency (the offset varies it between agencies)."""
    width = len(COMPANY_WORDS) * len(COMPANY_KINDS)
    # 127 is prime to the width, so the first `width` indexes each get their own word pair.
    spot = (index * 127 + offset) % width
    name = f"{COMPANY_WORDS[spot % len(COMPANY_WORDS)]} {COMPANY_KINDS[spot // len(COMPANY_WORDS)]}"
    return name if index < width else f"{name} {index // width + 1}"


def _company_offset(tenant: _Tenant) -> int:
    return tenant.id("clients", -1).int % 997


def demo_name_normalize(name: str) -> str:
    """Lower case, punctuation and repeated whitespace dropped: how the demo's name twins compare."""
    return " ".join(re.sub(r"[^\w\s]", " ", name.lower()).split())


def _variant(name: str, how: int, *, legal_suffix_may_differ: bool = False) -> str:
    """The same firm's name as the other app spelled it: case, whitespace, punctuation, suffix."""
    words = name.split()
    if how == 1:
        return name.upper()
    if how == 2:
        return f"  {'  '.join(words)} "
    if how == 3 and words[-1] in LEGAL_SUFFIXES:
        return f"{' '.join(words[:-1])}, {words[-1]}."
    if how == 4:
        return name.lower()
    if how == 5 and legal_suffix_may_differ and words[-1] not in LEGAL_SUFFIXES:
        return f"{name} LLC"
    return name


def _domain(base_name: str, tld_pick: int) -> str:
    return f"{slugify(base_name).replace('-', '')}.{TLDS[tld_pick % len(TLDS)]}"


class _Taken:
    """Agency names, slugs and domains already in either database, so a new demo never clashes."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.slugs: set[str] = set()
        self.domains: set[str] = set()

    @classmethod
    def load(cls) -> _Taken:
        taken = cls()
        with connections["revos"].cursor() as cursor:
            cursor.execute("SELECT name, domain FROM agencies")
            for name, domain in cursor.fetchall():
                taken._add(name, domain)
        with connections["unified"].cursor() as cursor:
            cursor.execute("SELECT name, slug, domain FROM agency")
            for name, slug, domain in cursor.fetchall():
                taken._add(name, domain)
                taken.slugs.add(slug)
        return taken

    def _add(self, name: str, domain: str | None) -> None:
        self.names.add(_name_key(name))
        if domain:
            self.domains.add(domain.lower())

    def claim(self, base: str, tld_pick: int) -> tuple[str, str]:
        """`base` (numbered if it is taken) and its domain, both reserved from now on."""
        candidate, number = base, 2
        while _name_key(candidate) in self.names or _domain(candidate, tld_pick) in self.domains:
            candidate, number = f"{base} {number}", number + 1
        domain = _domain(candidate, tld_pick)
        self._add(candidate, domain)
        return candidate, domain

    def slug(self, name: str) -> str:
        base = slugify(name)[:90] or "agency"
        candidate, number = base, 2
        while candidate in self.slugs:
            candidate, number = f"{base}-{number}", number + 1
        self.slugs.add(candidate)
        return candidate


def _name_key(name: str) -> str:
    """A firm's name without case, punctuation or legal suffix: two agencies must not share it."""
    words = demo_name_normalize(name).split()
    if words and words[-1] in {suffix.lower() for suffix in LEGAL_SUFFIXES}:
        words.pop()
    return " ".join(words)


def _agency_names(rng: random.Random, count: int) -> Iterator[str]:
    pool = [f"{word} {kind}" for word in AGENCY_WORDS for kind in AGENCY_KINDS]
    rng.shuffle(pool)
    for index in range(count):
        name = pool[index % len(pool)]
        yield name if index < len(pool) else f"{name} {index // len(pool) + 1}"


def _revos_agency(*, key: str, scale: float, base: str, taken: _Taken, dirty: bool) -> _RevosAgency:
    agency = _RevosAgency(key=key, scale=scale, tables=REVOS_TABLES, name="")
    picks = agency.id("agencies", -1).int
    agency.name, agency.mail_domain = taken.claim(base, picks >> 8)
    if picks % 3 == 0:
        agency.name = f"{agency.name} {LEGAL_SUFFIXES[(picks >> 4) % len(LEGAL_SUFFIXES)]}"
    # A RevOS-only agency sometimes never filled in its domain.
    agency.domain = None if dirty and (picks >> 12) % 3 == 0 else agency.mail_domain
    return agency


def _audience_agency(
    *, key: str, scale: float, taken: _Taken, twin: _RevosAgency | None, base: str | None = None
) -> _AudienceAgency:
    agency = _AudienceAgency(key=key, scale=scale, tables=UNIFIED_TABLES, name="")
    agency.twin = twin
    picks = agency.id("agency", -1).int
    if twin is None:
        agency.name, agency.domain = taken.claim(cast(str, base), picks >> 8)  # given where there is no twin
        agency.shared_users = agency.shared_clients = 0
    else:
        agency.name = _variant(twin.name, picks % 6, legal_suffix_may_differ=True)
        agency.domain = twin.mail_domain
        agency.shared_users = min(twin.n("users"), max(1, agency.n("user") // 2))
        agency.shared_clients = min(twin.n("clients"), max(1, agency.n("client") // 2))
    agency.slug = taken.slug(agency.name)
    return agency


@dataclass
class _Plan:
    revos: list[_RevosAgency] = field(default_factory=list)
    audience: list[_AudienceAgency] = field(default_factory=list)


def _demo_plan(*, agencies: int, scale: float, seed: int, taken: _Taken) -> _Plan:
    """Which agencies the demo has: about half in both apps, the rest RevOS-only, 1-2 AudienceOS-only."""
    rng = random.Random(f"demo:{seed}")
    audience_only = 1 if agencies < 4 else 2
    names = _agency_names(rng, agencies + audience_only)
    shared = set(rng.sample(range(agencies), (agencies + 1) // 2))
    plan = _Plan()
    for index in range(agencies):
        key = f"demo:{seed}:{index}"
        agency = _revos_agency(key=key, scale=scale, base=next(names), taken=taken, dirty=index not in shared)
        plan.revos.append(agency)
        if index in shared:
            plan.audience.append(_audience_agency(key=f"{key}:aos", scale=scale, taken=taken, twin=agency))
    for index in range(audience_only):
        key = f"demo:{seed}:aos{index}"
        plan.audience.append(_audience_agency(key=key, scale=scale, taken=taken, twin=None, base=next(names)))
    return plan


# ---------------------------------------------------------------------------------------------
# Rows as data: each table's columns and the rule that fills each (REVOS_TABLES, UNIFIED_TABLES).

TenantT = TypeVar("TenantT", bound=_Tenant)


class _Row(Generic[TenantT]):
    """One row as its rules build it: its agency, row number and id, the table's random stream,
    and the columns filled so far (`row["status"]`)."""

    __slots__ = ("a", "i", "id", "rng", "table", "values")

    def __init__(self, a: TenantT, table: str, i: int, rng: random.Random) -> None:
        self.a, self.table, self.i, self.id, self.rng = a, table, i, a.id(table, i), rng
        self.values: dict[str, Any] = {}

    def __getitem__(self, column: str) -> Any:
        return self.values[column]

    def agency_id(self) -> uuid.UUID:
        return self.a.agency_id()

    def created(self) -> datetime:
        return _stamp(self.id)

    def pick(self, table: str) -> uuid.UUID:
        return self.a.pick(self.rng, table)

    def later(self, moment: datetime, hours: int = 72) -> datetime:
        return _later(moment, self.rng, hours)

    def maybe(self, null_share: float, value: T) -> T | None:
        return _maybe(self.rng, null_share, value)

    def profile_url(self) -> str:
        first, last = _person(self.id)
        return f"https://www.linkedin.com/in/{first}-{last}-{self.id.hex[:6]}".lower()


Rule = Callable[[_Row[Any]], Any]
AGENCY: Rule = _Row.agency_id
CREATED: Rule = _Row.created


def _pick(table: str) -> Rule:
    """A random row of `table` of the same agency."""
    return lambda row: row.pick(table)


def _choice(*options: Any) -> Rule:
    return lambda row: row.rng.choice(options)


def _nullable(null_share: float, rule: Rule) -> Rule:
    """The rule's value, or NULL for about `null_share` of the rows (drawn after the value)."""
    return lambda row: row.maybe(null_share, rule(row))


def _after_created(hours: int = 72) -> Rule:
    """A moment up to `hours` after the row's creation (updated_at and the like)."""
    return lambda row: row.later(row.created(), hours)


def _numbered(template: str) -> Rule:
    """`template` with {n}, the row's number from 1."""
    return lambda row: template.format(n=row.i + 1)


@dataclass(frozen=True)
class _Rows(Generic[TenantT]):
    """A table's rows as data: every row's `id` is derived from its number, and each other column
    is filled by its rule, in the declared order; a name starting with "_" is a value the rules
    share that no column holds. The order is the order the rules draw from the table's random
    stream, so a seed gives the same rows whatever order the columns are written in."""

    table: str
    rules: tuple[tuple[str, Callable[[_Row[TenantT]], Any]], ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return ("id", *(name for name, _ in self.rules if not name.startswith("_")))

    def __call__(self, a: TenantT, rng: random.Random) -> Iterator[tuple]:
        columns, row = self.columns, _Row(a, self.table, 0, rng)
        for i in range(a.n(self.table)):
            row.i, row.id = i, a.id(self.table, i)
            values = row.values = {"id": row.id}
            for name, rule in self.rules:
                values[name] = rule(row)
            yield tuple([values[column] for column in columns])


def _revos(table: str, base: int, /, *, scaled: bool = True, **rules: Callable[[_Row[_RevosAgency]], Any]) -> _Table:
    """A RevOS table: `base` rows per agency at scale 1, its columns filled by `rules` (see `_Rows`)."""
    rows = _Rows(table, tuple(rules.items()))
    return _Table(table, rows.columns, base, rows, scaled)


def _aos(table: str, base: int, /, *, scaled: bool = True, **rules: Callable[[_Row[_AudienceAgency]], Any]) -> _Table:
    """An AudienceOS table: `base` rows per agency at scale 1, the columns `rules` fill (see `_Rows`);
    the rest (app_context and the other columns the unified migrations added) keep the defaults
    they had for AudienceOS's own rows."""
    rows = _Rows(table, tuple(rules.items()))
    return _Table(table, rows.columns, base, rows, scaled)


def _revos_user_email(agency: _RevosAgency, index: int) -> str:
    first, last = _person(agency.id("users", index))
    return f"{first}.{last}{index}@{agency.mail_domain}".lower()


def _lead_email(lead_id: uuid.UUID) -> str | None:
    """A lead's email, or None for the ~30% the scrapers never found (derived, so others can cite it)."""
    bits = lead_id.int
    if (bits >> 20) % 10 < 3:
        return None
    first, last = _person(lead_id)
    company = COMPANY_WORDS[(bits >> 32) % len(COMPANY_WORDS)].lower()
    return f"{first}.{last}.{(bits >> 40) % 1000}@{company}.example".lower()


def _revos_client_name(a: _RevosAgency, index: int) -> str:
    name = _company(index, _company_offset(a))
    return f"{name} Inc" if index % 4 == 2 else name


def _spread(i: int, count: int, among: int, shift: int = 0) -> int:
    """Distinct row numbers for `count` rows chosen among `among` (no set of them kept in memory)."""
    return (i * among // count + shift) % among if count <= among else i % among


def _spread_comment(shift: int) -> Rule:
    """One of the agency's comments, a different one per row while there are enough."""
    return lambda row: row.a.id("comments", _spread(row.i, row.a.n(row.table), row.a.n("comments"), shift))


def _emailed_lead(row: _Row) -> tuple[uuid.UUID | None, str]:
    """A lead with an email (up to five tries), or an address typed in by hand, tied to no lead."""
    lead_id, to_email = row.pick("leads"), None
    for _attempt in range(5):
        to_email = _lead_email(lead_id)
        if to_email:
            return lead_id, to_email
        lead_id = row.pick("leads")
    return None, f"contact{row.i}@{row.a.mail_domain}"


def _orphan(row: _Row) -> bool:
    """A backup row whose campaign (the first one's agency too) is long gone."""
    return row.i == 0 or row.rng.random() < 0.2


# ---------------------------------------------------------------------------------------------
# Supabase Auth accounts: every demo person can sign in, in the app(s) they belong to.

AUTH_INSTANCE = uuid.UUID(int=0)  # GoTrue's single-tenant instance id
# bcrypt's lowest cost: real hashes that verify like production ones, at a millisecond each.
DEMO_BCRYPT_COST = 4
AUTH_USER_COLUMNS = (
    "instance_id id aud role email encrypted_password email_confirmed_at confirmation_token recovery_token"
    " email_change_token_new email_change last_sign_in_at raw_app_meta_data raw_user_meta_data is_super_admin"
    " created_at updated_at"
)
AUTH_IDENTITY_COLUMNS = "id provider_id user_id identity_data provider last_sign_in_at created_at updated_at"


def demo_password(user_id: uuid.UUID) -> str:
    """A seeded person's demo password: derived from their id (itself derived from the seed)."""
    return "demo-" + hashlib.blake2b(f"demo-password/{user_id}".encode(), digest_size=8).hexdigest()


BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@functools.cache
def _bcrypt(password: str) -> str:
    """A $2a$ hash as GoTrue (Go's bcrypt) writes them. Its salt derives from the password, so the
    same seed gives the same rows; cached, so seeding the same seed again costs nothing."""
    digest = hashlib.blake2b(f"demo-salt/{password}".encode(), digest_size=22).digest()
    # The 22nd character carries only 2 bits of the 128-bit salt: keep it canonical (".Oeu").
    salt = "".join(BCRYPT_ALPHABET[b % 64] for b in digest[:21]) + ".Oeu"[digest[21] % 4]
    return bcrypt.hashpw(password.encode(), f"$2a${DEMO_BCRYPT_COST:02d}${salt}".encode()).decode()


def _google_sub(email: str) -> str:
    """The Google account id of an address: the same person has the same one in both apps."""
    return str(int.from_bytes(hashlib.blake2b(email.lower().encode(), digest_size=9).digest()) % 10**21)


@dataclass(frozen=True)
class _Account:
    """One person's account in one app: who, and with which sign-in methods."""

    tenant: _Tenant
    index: int
    user_id: uuid.UUID
    email: str
    full_name: str
    google: bool

    @property
    def created(self) -> datetime:
        return _stamp(self.user_id)

    def user_row(self) -> tuple:
        confirmed = None if self.index % 5 == 4 else _later(self.created, random.Random(str(self.user_id)), 24)
        signed_in = confirmed and confirmed + timedelta(days=2)
        providers = ["email", "google"] if self.google else ["email"]
        return (
            AUTH_INSTANCE,
            self.user_id,
            "authenticated",
            "authenticated",
            self.email,
            _bcrypt(demo_password(self.user_id)),
            confirmed,
            "",
            "",
            "",
            "",
            signed_in,
            json.dumps({"provider": "email", "providers": providers}),
            json.dumps({"full_name": self.full_name}),
            False,
            self.created,
            signed_in or self.created,
        )

    def identity_rows(self) -> Iterator[tuple]:
        email_data = {"sub": str(self.user_id), "email": self.email, "email_verified": True, "phone_verified": False}
        identities = [("email", str(self.user_id), email_data)]
        if self.google:
            sub = _google_sub(self.email)
            google_data = {
                "iss": "https://accounts.google.com",
                "sub": sub,
                "provider_id": sub,
                "email": self.email.lower(),
                "email_verified": True,
                "name": self.full_name,
            }
            identities.append(("google", sub, google_data))
        for number, (provider, provider_id, data) in enumerate(identities):
            row_id = self.tenant.id("auth.identities", self.index * 2 + number)
            yield row_id, provider_id, self.user_id, json.dumps(data), provider, None, self.created, self.created


def _revos_accounts(a: _RevosAgency) -> Iterator[_Account]:
    for i in range(a.n("users")):
        user_id = a.id("users", i)
        # Most RevOS people also signed in with Google.
        yield _Account(a, i, user_id, _revos_user_email(a, i), " ".join(_person(user_id)), google=i % 3 != 2)


def _aos_accounts(a: _AudienceAgency) -> Iterator[_Account]:
    for i in range(a.n("user")):
        first, last, email = _aos_person(a, i)
        # Person 1 (in both apps when the agency is) has the same Google account in both.
        yield _Account(a, i, a.id("user", i), email, f"{first} {last}", google=i % 4 == 1)


def _auth_users(accounts: Callable[..., Iterator[_Account]]) -> Callable[..., Iterator[tuple]]:
    return lambda a, rng: (account.user_row() for account in accounts(a))


def _auth_identities(accounts: Callable[..., Iterator[_Account]]) -> Callable[..., Iterator[tuple]]:
    return lambda a, rng: (row for account in accounts(a) for row in account.identity_rows())


def _auth(name: str, columns: str, rows: Callable[..., Iterator[tuple]]) -> _Table:
    """A Supabase Auth table: its rows carry the named columns (GoTrue's defaults fill the rest);
    one or two rows per person, whatever the scale."""
    return _Table(name, tuple(columns.split()), 0, rows, False)


# In foreign-key order. Each RevOS entry: the table, its rows per agency at scale 1 (about 1,000
# in all; posts, comments, leads and DMs are nine tenths of them, so --scale 1000 makes an agency
# of about a million rows), then each column and the rule that fills it, listed in the order the
# rules draw from the table's random stream (`_Rows`).
REVOS_TABLES: tuple[_Table, ...] = (
    _revos(
        "agencies",
        1,
        scaled=False,
        name=lambda row: row.a.name,
        domain=lambda row: row.a.domain,
        plan=_choice("starter", "growth", "scale"),
        created_at=CREATED,
        updated_at=_after_created(),
    ),
    _revos(
        "users",
        5,
        agency_id=AGENCY,
        role=lambda row: "owner" if row.i == 0 else row.rng.choice(("admin", "member", "member")),
        full_name=_nullable(0.1, lambda row: " ".join(_person(row.id))),
        email=lambda row: _revos_user_email(row.a, row.i),
        created_at=CREATED,
    ),
    _auth("auth.users", AUTH_USER_COLUMNS, _auth_users(_revos_accounts)),
    _auth("auth.identities", AUTH_IDENTITY_COLUMNS, _auth_identities(_revos_accounts)),
    _revos(
        "clients",
        8,
        agency_id=AGENCY,
        name=lambda row: _revos_client_name(row.a, row.i),
        website=_nullable(0.25, lambda row: f"https://{slugify(row['name'])}.example"),
        status=_choice("active", "active", "active", "paused", "churned"),
        created_at=CREATED,
        updated_at=_after_created(2000),
    ),
    _revos(
        "chat_sessions",
        6,
        agency_id=AGENCY,
        user_id=_nullable(0.1, _pick("users")),
        client_id=_nullable(0.4, _pick("clients")),
        title=_nullable(0.2, lambda row: f"Ideas for {row.rng.choice(TOPICS)}"),
        created_at=CREATED,
        updated_at=_after_created(),
    ),
    _revos(
        "chat_messages",
        24,
        session_id=_pick("chat_sessions"),
        role=lambda row: "user" if row.i % 2 == 0 else "assistant",
        content=lambda row: f"{'Draft' if row['role'] == 'user' else 'Here is'} a post about {row.rng.choice(TOPICS)}.",
        created_at=lambda row: row.later(_stamp(row["session_id"])),
    ),
    _revos(
        "hgc_sessions",
        4,
        agency_id=AGENCY,
        metadata=lambda row: json.dumps({"agent": "agentkit", "model": row.rng.choice(("gpt-4o", "gpt-4.1"))}),
        title=_nullable(0.2, lambda row: f"HGC: {row.rng.choice(TOPICS)}"),
        user_id=_nullable(0.1, _pick("users")),
        created_at=CREATED,
        updated_at=_after_created(),
    ),
    _revos(
        "hgc_messages",
        16,
        session_id=_pick("hgc_sessions"),
        role=lambda row: "user" if row.i % 2 == 0 else "assistant",
        tool_calls=lambda row: (
            None
            if row["role"] == "user" or row.rng.random() < 0.6
            else json.dumps([{"name": "search_leads", "args": {}}])
        ),
        content=lambda row: (
            f"{'Find' if row['role'] == 'user' else 'Found'} leads interested in {row.rng.choice(TOPICS)}."
        ),
        created_at=lambda row: row.later(_stamp(row["session_id"])),
    ),
    _revos(
        "brand_cartridges",
        2,
        agency_id=AGENCY,
        company_name=lambda row: _company(row.i, _company_offset(row.a)),
        industry=_nullable(0.3, lambda row: COMPANY_KINDS[row.i % len(COMPANY_KINDS)]),
        tone=_nullable(0.2, _choice("friendly", "bold", "expert", "playful")),
        logo_url=_nullable(0.5, lambda row: f"https://cdn.example/logos/{row.id.hex[:12]}.png"),
        user_id=_nullable(0.2, _pick("users")),
        name=lambda row: f"{row['company_name']} brand",
        is_active=lambda row: row.rng.random() > 0.1,
        created_at=CREATED,
        updated_at=_after_created(),
    ),
    _revos(
        "style_cartridges",
        2,
        agency_id=AGENCY,
        writing_style=_nullable(0.2, _choice("Short lines, one idea each.", "Story first, lesson last.")),
        examples=lambda row: json.dumps([f"Example post about {row.rng.choice(TOPICS)}"]),
        user_id=_nullable(0.2, _pick("users")),
        name=_numbered("Style {n}"),
        is_active=lambda row: row.rng.random() > 0.1,
        created_at=CREATED,
        updated_at=_after_created(),
    ),
    _revos(
        "linkedin_accounts",
        3,
        agency_id=AGENCY,
        profile_url=_Row.profile_url,
        unipile_account_id=_nullable(0.2, lambda row: f"unp_{row.id.hex[:16]}"),
        status=_choice("connected", "connected", "disconnected"),
        user_id=_nullable(0.1, _pick("users")),
        display_name=_nullable(0.15, lambda row: " ".join(_person(row.id))),
        created_at=CREATED,
    ),
    _revos(
        "campaigns",
        4,
        agency_id=AGENCY,
        client_id=_nullable(0.2, lambda row: row.a.id("clients", row.i % row.a.n("clients"))),
        trigger_word=_nullable(0.25, lambda row: TRIGGER_WORDS[row.i % len(TRIGGER_WORDS)]),
        settings=lambda row: json.dumps(
            {"daily_dm_limit": row.rng.choice((20, 40, 80)), "auto_reply": row.rng.random() < 0.5}
        ),
        status=_choice("draft", "active", "active", "paused", "completed"),
        name=lambda row: f"{row.rng.choice(TOPICS).title()} {row.i + 1}",
        created_at=CREATED,
        updated_at=_after_created(500),
    ),
    _revos(
        "posts",
        30,
        agency_id=AGENCY,
        status=_choice("draft", "scheduled", "published", "published", "published"),
        published_at=lambda row: row.later(row.created(), 48) if row["status"] == "published" else None,
        content=lambda row: (
            f"{row.rng.randrange(3, 12)} lessons on {row.rng.choice(TOPICS)}. Comment {row.rng.choice(TRIGGER_WORDS)}."
        ),
        campaign_id=_nullable(0.4, _pick("campaigns")),
        linkedin_account_id=_pick("linkedin_accounts"),
        created_at=CREATED,
    ),
    _revos(
        "comments",
        240,
        post_id=_pick("posts"),
        author_name=_nullable(0.05, lambda row: " ".join(_person(row.id))),
        author_profile_url=_nullable(0.1, _Row.profile_url),
        content=lambda row: row.rng.choice(COMMENT_LINES) if row.rng.random() < 0.7 else row.rng.choice(TRIGGER_WORDS),
        created_at=lambda row: row.later(_stamp(row["post_id"])),
    ),
    _revos(
        "lead_magnets",
        4,
        agency_id=AGENCY,
        campaign_id=lambda row: row.a.id("campaigns", row.i % row.a.n("campaigns")),
        url=_nullable(0.2, lambda row: f"https://files.example/{row.id.hex[:10]}.pdf"),
        title=lambda row: f"The {row.rng.choice(TOPICS)} {TRIGGER_WORDS[row.i % len(TRIGGER_WORDS)].lower()}",
        created_at=CREATED,
    ),
    _revos(
        "lead_magnet_library",
        3,
        agency_id=AGENCY,
        description=_nullable(0.3, lambda row: f"A reusable asset on {row.rng.choice(TOPICS)}."),
        file_url=_nullable(0.2, lambda row: f"https://files.example/library/{row.id.hex[:10]}.pdf"),
        title=_numbered("Library item {n}"),
        created_at=CREATED,
    ),
    _revos(
        "leads",
        160,
        agency_id=AGENCY,
        # Most leads came through a lead magnet and so through its campaign; some arrived bare.
        _magnet=lambda row: row.rng.randrange(row.a.n("lead_magnets")),
        _through_magnet=lambda row: row.rng.random() < 0.6,
        lead_magnet_id=lambda row: row.a.id("lead_magnets", row["_magnet"]) if row["_through_magnet"] else None,
        campaign_id=lambda row: (
            row.a.id("campaigns", row["_magnet"] % row.a.n("campaigns"))
            if row["_through_magnet"]
            else row.maybe(0.25, row.pick("campaigns"))
        ),
        name=_nullable(0.05, lambda row: " ".join(_person(row.id))),
        linkedin_url=_nullable(0.1, _Row.profile_url),
        email=lambda row: _lead_email(row.id),
        status=_choice(*LEAD_STATUSES),
        created_at=CREATED,
    ),
    _revos(
        "dm_sequences",
        4,
        agency_id=AGENCY,
        steps=lambda row: json.dumps([{"delay_hours": 24 * step, "template": f"step {step + 1}"} for step in range(3)]),
        campaign_id=_nullable(0.15, lambda row: row.a.id("campaigns", row.i % row.a.n("campaigns"))),
        status=_choice("active", "active", "paused"),
        name=_numbered("Sequence {n}"),
        created_at=CREATED,
    ),
    _revos(
        "dm_messages",
        320,
        lead_id=_nullable(0.05, _pick("leads")),
        direction=lambda row: DM_DIRECTIONS[row.rng.random() < 0.7],
        body=lambda row: "Thanks, sending it now!" if row["direction"] == "outbound" else "Yes please, send it over.",
        sent_at=_nullable(0.1, lambda row: row.later(row.created())),
        sequence_id=_pick("dm_sequences"),
    ),
    _revos(
        "dm_deliveries",
        60,
        status=_choice("pending", "sent", "sent", "failed"),
        delivered_at=lambda row: row.later(row.created()) if row["status"] == "sent" else None,
        lead_id=_nullable(0.05, _pick("leads")),
        sequence_id=_pick("dm_sequences"),
        step=lambda row: row.rng.randrange(3),
    ),
    _revos(
        "webhook_configs",
        2,
        agency_id=AGENCY,
        secret=_nullable(0.3, lambda row: row.id.hex),
        events=lambda row: json.dumps(
            row.rng.sample(["lead.created", "dm.sent", "comment.triggered", "post.published"], 2)
        ),
        url=lambda row: f"https://hooks.example/{row.id.hex[:8]}",
        is_active=lambda row: row.rng.random() > 0.2,
        created_at=CREATED,
    ),
    _revos(
        "webhook_deliveries",
        8,
        webhook_config_id=_pick("webhook_configs"),
        payload=lambda row: json.dumps({"event": "lead.created", "n": row.i}),
        status_code=_nullable(0.1, _choice(200, 200, 200, 500, 404)),
        delivered_at=lambda row: row.later(_stamp(row["webhook_config_id"]), 5000),
    ),
    _revos(
        "webhook_endpoints",
        1,
        agency_id=AGENCY,
        url=lambda row: f"https://api.example/inbound/{row.id.hex[:8]}",
        created_at=CREATED,
    ),
    _revos(
        "webhook_logs",
        6,
        webhook_endpoint_id=_pick("webhook_endpoints"),
        payload=lambda row: json.dumps({"source": row.rng.choice(("zapier", "make", "n8n")), "n": row.i}),
        received_at=lambda row: row.later(_stamp(row["webhook_endpoint_id"]), 5000),
    ),
    _revos(
        "pods",
        2,
        agency_id=AGENCY,
        name=lambda row: f"{row.rng.choice(AGENCY_WORDS)} pod",
        created_at=CREATED,
    ),
    _revos(
        "pod_members",
        6,
        # A member's pod follows from its row number, so activities can name a matching pair.
        pod_id=lambda row: row.a.id("pods", row.i % row.a.n("pods")),
        linkedin_account_id=_pick("linkedin_accounts"),
        joined_at=lambda row: row.later(_stamp(row["pod_id"]), 500),
    ),
    _revos(
        "pod_activities",
        20,
        _member=lambda row: row.rng.randrange(row.a.n("pod_members")),
        pod_id=lambda row: row.a.id("pods", row["_member"] % row.a.n("pods")),
        pod_member_id=_nullable(0.05, lambda row: row.a.id("pod_members", row["_member"])),
        post_id=_nullable(0.1, _pick("posts")),
        activity_type=_choice("like", "comment", "repost"),
        created_at=CREATED,
    ),
    _revos(
        "console_workflows",
        2,
        agency_id=AGENCY,
        definition=lambda row: json.dumps({"steps": ["research", "draft", "review"][: row.rng.randrange(1, 4)]}),
        name=_numbered("Workflow {n}"),
        created_at=CREATED,
    ),
    _revos(
        "console_prompts",
        4,
        agency_id=AGENCY,
        workflow_id=_nullable(0.2, _pick("console_workflows")),
        prompt=lambda row: f"Write a LinkedIn post about {row.rng.choice(TOPICS)} in the brand voice.",
        name=_numbered("Prompt {n}"),
        created_at=CREATED,
    ),
    _revos(
        "campaign_skills",
        4,
        skill_name=_choice("comment_reply", "dm_followup", "lead_enrich", "post_writer"),
        config=lambda row: json.dumps({"enabled": row.rng.random() > 0.2}),
        campaign_id=lambda row: row.a.id("campaigns", row.i % row.a.n("campaigns")),
    ),
    _revos(
        "skill_executions",
        12,
        # A queued execution has not started, a running one not finished.
        status=_choice("queued", "running", "succeeded", "succeeded", "failed"),
        started_at=lambda row: None if row["status"] == "queued" else row.created(),
        finished_at=lambda row: row.later(row["started_at"], 1) if row["status"] in ("succeeded", "failed") else None,
        output=lambda row: json.dumps({"ok": row["status"] == "succeeded"}) if row["finished_at"] else None,
        campaign_skill_id=_pick("campaign_skills"),
        input=_nullable(0.2, lambda row: '{"lead": 1}'),
    ),
    _revos(
        "memories",
        8,
        agency_id=AGENCY,
        content=lambda row: f"Prefers posts about {row.rng.choice(TOPICS)}.",
        user_id=_nullable(0.2, _pick("users")),
        metadata=lambda row: '{"source": "hgc"}',
        created_at=CREATED,
    ),
    _revos(
        "queue_jobs",
        8,
        agency_id=AGENCY,
        job_type=_choice("send_dm", "scrape_profile", "publish_post"),
        status=_choice("queued", "done", "done", "failed"),
        payload=lambda row: json.dumps({"attempt": row.rng.randrange(1, 4)}),
        run_at=_nullable(0.2, CREATED),
    ),
    _revos(
        "notifications",
        10,
        agency_id=AGENCY,
        body=_nullable(0.3, lambda row: "A lead replied to your sequence."),
        user_id=_nullable(0.1, _pick("users")),
        title=lambda row: "New reply",
        read_at=_nullable(0.5, _after_created()),
        created_at=CREATED,
    ),
    _revos(
        "processed_comments",
        20,
        agency_id=AGENCY,
        comment_id=_nullable(0.05, _spread_comment(0)),
        processed_at=CREATED,
    ),
    _revos(
        "processed_messages",
        10,
        agency_id=AGENCY,
        external_message_id=lambda row: f"msg_{row.id.hex[:20]}",
        processed_at=CREATED,
    ),
    _revos(
        "triggered_comments",
        10,
        agency_id=AGENCY,
        comment_id=_spread_comment(1),
        campaign_id=_nullable(0.1, _pick("campaigns")),
        triggered_at=CREATED,
    ),
    _revos(
        "pending_connections",
        6,
        agency_id=AGENCY,
        linkedin_account_id=_nullable(0.1, _pick("linkedin_accounts")),
        profile_url=_Row.profile_url,
        requested_at=CREATED,
    ),
    _revos(
        "connected_accounts",
        3,
        agency_id=AGENCY,
        user_id=_nullable(0.1, _pick("users")),
        provider=lambda row: ("linkedin", "google", "hubspot")[row.i % 3],
        external_id=lambda row: f"ext_{row.id.hex[:12]}",
        connected_at=CREATED,
    ),
    _revos(
        "scrape_jobs",
        4,
        agency_id=AGENCY,
        target_url=lambda row: f"https://www.linkedin.com/search/{row.id.hex[:8]}",
        status=_choice("queued", "done", "done", "failed"),
        result=lambda row: json.dumps({"profiles": row.rng.randrange(5, 200)}) if row["status"] == "done" else None,
        created_at=CREATED,
    ),
    _revos(
        "email_queue",
        10,
        agency_id=AGENCY,
        _to=_emailed_lead,
        lead_id=lambda row: row["_to"][0],
        to_email=lambda row: row["_to"][1],
        subject=lambda row: "Your guide",
        status=_choice("queued", "sent", "sent", "bounced"),
        body=_nullable(0.1, lambda row: "Here is the guide you asked for."),
        scheduled_at=_nullable(0.2, _after_created()),
    ),
    _revos(
        "email_extraction_reviews",
        6,
        agency_id=AGENCY,
        _lead=_pick("leads"),
        status=_choice("pending", "approved", "rejected"),
        reviewed_at=lambda row: None if row["status"] == "pending" else row.created(),
        lead_id=_nullable(0.1, lambda row: row["_lead"]),
        extracted_email=lambda row: _lead_email(row["_lead"]),
    ),
    _revos(
        "unipile_webhook_logs",
        8,
        agency_id=AGENCY,
        event=_choice("message.received", "account.connected", "invitation.accepted"),
        payload=lambda row: json.dumps({"event": row["event"], "n": row.i}),
        received_at=CREATED,
    ),
    # A copy RevOS ops kept of some sequences; the first row's agency and campaign are long gone.
    _revos(
        "backup_dm_sequences",
        3,
        _orphan=_orphan,
        campaign_id=lambda row: row.a.id("deleted_campaigns", row.i) if row["_orphan"] else row.pick("campaigns"),
        agency_id=lambda row: row.a.id("deleted_agencies", row.i) if row.i == 0 else row.agency_id(),
        name=_nullable(0.2, _numbered("Old sequence {n}")),
        steps=_nullable(0.3, lambda row: "[]"),
        status=_nullable(0.3, lambda row: "archived"),
        created_at=CREATED,
        backed_up_at=_after_created(2000),
    ),
    _revos(
        "campaigns_trigger_word_backup",
        3,
        _orphan=_orphan,
        campaign_id=lambda row: (
            row.a.id("deleted_campaigns", 1000 + row.i) if row["_orphan"] else row.pick("campaigns")
        ),
        trigger_word=_nullable(0.2, _choice(*TRIGGER_WORDS)),
        backed_up_at=CREATED,
    ),
)


# ---------------------------------------------------------------------------------------------
# AudienceOS rows in the unified database.


def _aos_person(a: _AudienceAgency, index: int) -> tuple[str, str, str]:
    """First name, last name and email of AudienceOS user `index`; the first few are RevOS users too."""
    if index < a.shared_users:
        twin = cast(_RevosAgency, a.twin)  # only an agency with a twin shares users
        first, last = _person(twin.id("users", index))
        email = _revos_user_email(twin, index)
        # The same person, but AudienceOS kept the capitals they typed at sign-up.
        return first, last, (f"{first}.{last}{index}@{a.domain}" if index % 2 else email)
    first, last = _person(a.id("user", index))
    return first, last, f"{first}.{last}.{index}@{a.domain}".lower()


def _aos_client_name(a: _AudienceAgency, index: int) -> str:
    if index < a.shared_clients:
        # exact, upper case, "X, Inc." for "X Inc", extra whitespace, lower case
        return _variant(_revos_client_name(cast(_RevosAgency, a.twin), index), (0, 1, 3, 2, 4)[index % 5])
    # Numbered past the RevOS twin's clients, so no accidental twin appears.
    twin_clients = a.twin.n("clients") if a.twin else 0
    return _company(twin_clients + index, _company_offset(a.twin or a))


CARTRIDGE_TYPES = ("training", "voice", "style", "brand", "preferences", "instructions")

# As REVOS_TABLES: the table, its rows per agency at scale 1, then each column and its rule.
UNIFIED_TABLES: tuple[_Table, ...] = (
    _aos(
        "agency",
        1,
        scaled=False,
        name=lambda row: row.a.name,
        slug=lambda row: row.a.slug,
        domain=lambda row: row.a.domain,
        settings=lambda row: json.dumps({"timezone": row.rng.choice(("UTC", "America/New_York", "Europe/London"))}),
        created_at=CREATED,
        updated_at=_after_created(),
    ),
    _aos(
        "user",
        4,
        agency_id=AGENCY,
        _person=lambda row: _aos_person(row.a, row.i),
        role=lambda row: "owner" if row.i == 0 else row.rng.choice(("admin", "member", "member")),
        email=lambda row: row["_person"][2],
        first_name=_nullable(0.05, lambda row: row["_person"][0]),
        last_name=_nullable(0.1, lambda row: row["_person"][1]),
        created_at=CREATED,
        updated_at=_after_created(),
    ),
    _auth("auth.users", AUTH_USER_COLUMNS, _auth_users(_aos_accounts)),
    _auth("auth.identities", AUTH_IDENTITY_COLUMNS, _auth_identities(_aos_accounts)),
    _aos(
        "client",
        6,
        agency_id=AGENCY,
        name=lambda row: _aos_client_name(row.a, row.i),
        website=_nullable(0.2, lambda row: f"https://{slugify(row['name'])}.example"),
        contact_email=_nullable(0.3, lambda row: f"hello@{slugify(row['name'])}.example"),
        stage=_choice("onboarding", "active", "active", "renewal"),
        health_status=_nullable(0.2, _choice("green", "yellow", "red")),
        created_at=CREATED,
        updated_at=_after_created(2000),
    ),
    _aos(
        "chat_session",
        4,
        agency_id=AGENCY,
        user_id=_nullable(0.1, _pick("user")),
        client_id=_nullable(0.3, _pick("client")),
        title=_nullable(0.2, lambda row: f"Client health: {row.rng.choice(TOPICS)}"),
        context=lambda row: '{"page": "dashboard"}',
        created_at=CREATED,
        updated_at=_after_created(),
    ),
    _aos(
        "chat_message",
        16,
        agency_id=AGENCY,
        session_id=_pick("chat_session"),
        role=lambda row: "user" if row.i % 2 == 0 else "assistant",
        content=lambda row: (
            f"{'Summarise' if row['role'] == 'user' else 'Summary of'} the client's {row.rng.choice(TOPICS)}."
        ),
        created_at=lambda row: row.later(_stamp(row["session_id"])),
        ai_provider=lambda row: "gemini",
    ),
    # RBAC is configuration, not volume: the same matrix at every scale.
    _aos(
        "permission",
        len(PERMISSIONS),
        scaled=False,
        agency_id=AGENCY,
        role=lambda row: PERMISSIONS[row.i][0],
        resource=lambda row: PERMISSIONS[row.i][1],
        action=lambda row: PERMISSIONS[row.i][2],
        created_at=CREATED,
    ),
    _aos(
        "cartridge",
        4,
        agency_id=AGENCY,
        type=lambda row: CARTRIDGE_TYPES[row.i % len(CARTRIDGE_TYPES)],
        config=lambda row: json.dumps(
            {"source": "training", "notes": f"{row['type']} guidance for {row.rng.choice(TOPICS)}"}
        ),
        user_id=_nullable(0.2, _pick("user")),
        name=lambda row: f"{row['type'].title()} {row.i + 1}",
        app_context=lambda row: "audience",
        is_active=lambda row: row.rng.random() > 0.1,
        created_at=CREATED,
        updated_at=_after_created(),
    ),
    _aos(
        "client_assignment",
        6,
        agency_id=AGENCY,
        client_id=lambda row: row.a.id("client", row.i % row.a.n("client")),
        role=_choice("owner", "owner", "support"),
        user_id=_pick("user"),
        created_at=CREATED,
    ),
    _aos(
        "task",
        10,
        agency_id=AGENCY,
        due_date=_nullable(0.3, lambda row: (row.created() + timedelta(days=row.rng.randrange(1, 30))).date()),
        client_id=_nullable(0.1, _pick("client")),
        assignee_id=_nullable(0.2, _pick("user")),
        title=lambda row: f"Review {row.rng.choice(TOPICS)}",
        status=_choice("todo", "in_progress", "done"),
        created_at=CREATED,
    ),
    _aos(
        "alert",
        3,
        agency_id=AGENCY,
        resolved_at=_nullable(0.5, _after_created()),
        client_id=_nullable(0.1, _pick("client")),
        severity=_choice("info", "warning", "critical"),
        message=lambda row: "Spend is pacing above plan.",
        created_at=CREATED,
    ),
    _aos(
        "document",
        5,
        agency_id=AGENCY,
        url=_nullable(0.2, lambda row: f"https://docs.example/{row.id.hex[:10]}"),
        client_id=_nullable(0.1, _pick("client")),
        title=_numbered("Report {n}"),
        created_at=CREATED,
    ),
    _aos(
        "kpi_snapshot",
        12,
        agency_id=AGENCY,
        metric=lambda row: ("roas", "cpl", "ctr", "spend")[row.i % 4],
        value=lambda row: f"{row.rng.uniform(0.5, 5000):.2f}",
        captured_on=lambda row: date(2025, 1, 6) + timedelta(days=row.i % 365),
        client_id=_nullable(0.1, _pick("client")),
    ),
)


# ---------------------------------------------------------------------------------------------
# Writing


def _copy(*, database: str, tables: Sequence[_Table], tenants: Sequence[_Tenant], summary: DemoSummary) -> None:
    """Stream every tenant's rows into each table with one COPY per table, on the Django connection."""
    if not tenants:
        return
    connections[database].ensure_connection()
    with connections[database].connection.cursor() as cursor:
        for table in tables:
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                table_identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, table.columns))
            )
            try:
                summary.rows[f"{database}.{table.name}"] += _copy_table(cursor, statement, table, tenants)
            except psycopg.Error as error:
                raise DemoDataError(f"Writing {database}.{table.name} failed: {error}") from error


def _copy_table(cursor: psycopg.Cursor, statement: sql.Composed, table: _Table, tenants: Sequence[_Tenant]) -> int:
    written = 0
    with cursor.copy(statement) as copy:
        for tenant in tenants:
            for row in table.rows(tenant, tenant.rng(table.name)):
                copy.write_row(row)
                written += 1
    return written


def _refuse_if_present(plan: _Plan) -> None:
    """Stop before writing when this seed's agencies are already there (ids are derived from it)."""
    checks = (
        ("revos", "agencies", [a.id("agencies", 0) for a in plan.revos]),
        ("unified", "agency", [a.id("agency", 0) for a in plan.audience]),
    )
    for database, table, ids in checks:
        with connections[database].cursor() as cursor:
            cursor.execute(f"SELECT name FROM {table} WHERE id = ANY(%s) LIMIT 1", [ids])
            found = cursor.fetchone()
        if found:
            raise DemoDataError(
                f"The {database} database already holds this demo data (agency {found[0]!r}). "
                "Use --reset to empty the tenant tables first, or choose another --seed."
            )


def _write(plan: _Plan) -> DemoSummary:
    summary = DemoSummary()
    with transaction.atomic(using="revos"), transaction.atomic(using="unified"):
        _refuse_if_present(plan)
        _copy(database="revos", tables=REVOS_TABLES, tenants=plan.revos, summary=summary)
        _copy(database="unified", tables=UNIFIED_TABLES, tenants=plan.audience, summary=summary)
    twins = {id(a.twin): a for a in plan.audience if a.twin}
    for agency in plan.revos:
        twin = twins.get(id(agency))
        summary.agencies.append(
            DemoAgency(
                agency.id("agencies", 0),
                agency.name,
                twin.id("agency", 0) if twin else None,
                twin.name if twin else None,
            )
        )
    for audience_agency in plan.audience:
        if audience_agency.twin is None:
            summary.agencies.append(DemoAgency(None, None, audience_agency.id("agency", 0), audience_agency.name))
    return summary


def _require_schemas() -> None:
    """Name the command to run when a database lacks the tables the demo fills."""
    for database, table, command in (
        ("revos", "agencies", "apply_revos_schema"),
        ("unified", "cartridge", "apply_unified_schema"),
    ):
        with connections[database].cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f"public.{table}"])
            if not fetch_value(cursor):
                raise DemoDataError(f"The {database} database has no {table} table: run `manage.py {command}` first.")


def _claim(*, destructive: str | None) -> None:
    """Only demo and test databases (services/database_marks.py); the refusal is a DemoDataError."""
    try:
        demo_databases_claim(destructive=destructive)
    except DatabaseNotMarked as refusal:
        raise DemoDataError(str(refusal)) from refusal


def _check_scale(scale: float) -> None:
    if not scale > 0:
        raise DemoDataError(f"--scale must be greater than 0 (got {scale}).")


def demo_data_seed(*, agencies: int, scale: float, seed: int) -> DemoSummary:
    """Seed `agencies` RevOS agencies (about half also in AudienceOS) plus 1-2 AudienceOS-only ones.

    Deterministic for a given seed on a given database; refuses (DemoDataError) if this seed's
    agencies are already there. Everything is written in one transaction per database.
    """
    if agencies < 1:
        raise DemoDataError(f"--agencies must be at least 1 (got {agencies}).")
    _check_scale(scale)
    _require_schemas()
    _claim(destructive=None)
    plan = _demo_plan(agencies=agencies, scale=scale, seed=seed, taken=_Taken.load())
    return _write(plan)


def demo_agency_seed(*, scale: float, seed: int, name: str | None = None, people: int | None = None) -> uuid.UUID:
    """Add one RevOS-only agency of the given scale (for benchmarks and tests); returns its id.

    `people`: its users (and their accounts) whatever the scale, e.g. the many people of an
    agency whose cutover window is measured."""
    _check_scale(scale)
    _require_schemas()
    _claim(destructive=None)
    rng = random.Random(f"agency:{seed}")
    base = name or f"{rng.choice(AGENCY_WORDS)} {rng.choice(AGENCY_KINDS)}"
    agency = _revos_agency(key=f"agency:{seed}:{name or ''}", scale=scale, base=base, taken=_Taken.load(), dirty=True)
    if name:  # the caller's name stands as given, though its domain may be numbered
        agency.name = name
    if people is not None:
        agency.counts["users"] = max(1, people)
    _write(_Plan(revos=[agency]))
    return agency.id("agencies", 0)


def demo_data_reset() -> None:
    """Empty every tenant table in the RevOS and unified databases, and the migration bookkeeping."""
    _require_schemas()
    _claim(destructive="--reset")
    # The change capture goes first: while it has an agency, captured tables refuse TRUNCATE.
    kinds = ("tablename IN ('capture_agency', 'change_log')", "tablename IN ('id_map', 'checkpoint')")
    for database in ("revos", "unified"):
        with connections[database].cursor() as cursor:
            for condition in (
                f"schemaname = 'controlplane' AND {kinds[0]}",
                f"schemaname = 'public' OR (schemaname = 'controlplane' AND {kinds[1]})"
                " OR (schemaname = 'auth' AND tablename IN ('users', 'identities'))",
            ):
                cursor.execute(
                    f"SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables WHERE {condition}"
                )
                tables = [row[0] for row in cursor.fetchall()]
                if tables:
                    cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


def demo_phase0_problems_plant() -> None:
    """Put the seed's Phase 0 problems back into both databases (migration_jobs.demo.phase0)."""
    _claim(destructive="--with-phase0-problems")
    for database in ("revos", "unified"):
        phase0_problems_plant(database=database)


def demo_table_names() -> dict[str, tuple[str, ...]]:
    """The tables the demo fills, per database, in the order it fills them."""
    return {"revos": tuple(t.name for t in REVOS_TABLES), "unified": tuple(t.name for t in UNIFIED_TABLES)}
