"""
gen_data.py -- synthetic business documents and the answers the phi3 SQL
functions ask for, as chat token sequences of the engine's own tokenizer.

    /usr/bin/python3 tools/train/gen_data.py --out DIR [--train N] [--heldout N] [--seed S]

Documents: invoices, incident reports, support tickets, sales notes (as
prose or as forms, with filler sentences) and product records.  Names are
drawn from lists and also invented from syllables, amounts and ids are
random numbers, dates are random and written in seven formats, so that an
answer can only be right by reading (copying from) the document.

Tasks, with the exact prompts of src/pg/prompts.c and classify.c:
  extract    a short-form schema drawn at random (jsonb key order, types
             text / numeric / integer / date / enum list, "?" = nullable,
             sometimes a field the document lacks -> null); the prompt's
             SHAPE is the engine's own description of the JSON Schema that
             extract_schema.c builds; the answer is the compact JSON
  classify   a label list (document kind, ticket category, priority,
             sentiment), the answer the label as a JSON string
  summarize  max_words N, optional focus; the answer names the key
             entities and has at most N words
  describe   a product row as jsonb_pretty (nulls stripped), optional style
  generate   a question about a document (no system turn)

Token ids come from bin/phi3-trainprep (p3_chat_tokenize, p3_schema_describe).
Output: DIR/train.jsonl and DIR/heldout.jsonl, one sample a line:
{"task", "prompt": [ids], "answer": [ids], "meta": {...}} (meta: what the
evaluation needs: the document, the schema, the expected values).
"""

import argparse
import json
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# ---- prompts (src/pg/prompts.c, classify.c) ----
SYS_SUMMARIZE = "You are a concise assistant that summarizes documents faithfully."
SYS_DESCRIBE = "You are a copywriter. You write accurate, appealing texts and never invent facts."
SYS_EXTRACT = "You extract data from documents. You reply with a single JSON object and nothing else."
SYS_CLASSIFY = "You classify documents. You reply with exactly one of the given labels and nothing else."


def summarize_instruction(n, focus):
    s = "Summarize the following document in at most %d words" % n
    if focus:
        s += ", focusing on %s" % focus
    return s + ". Reply with the summary only.\n\n"


def describe_instruction(style):
    s = "Write a "
    if style:
        s += style + " "
    return s + ("product description for the following item. Use only facts from the data. "
                "Reply with the description only.\n\n")


def extract_instruction(shape):
    return ("Extract the data of the following document as one compact JSON value of this shape: %s. "
            "Use only facts from the document. Write dates as YYYY-MM-DD.\n\n" % shape)


def classify_instruction(labels, instruction):
    s = ("Classify the following document. Answer with one of these labels, as a JSON string: [%s]."
         % ", ".join(json.dumps(l, ensure_ascii=False) for l in labels))
    if instruction:
        s += " " + instruction
    return s + "\n\n"


DATE_PATTERN = ("([1-9][0-9]{3}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|"
                "(0[13578]|1[02])-31)|([1-9][0-9](0[48]|[2468][048]|[13579][26])|([2468][048]|"
                "[13579][26])00)-02-29)")

# the JSON Schema of a short-form type, as extract_schema.c writes it
TYPE_SCHEMA = {
    "text": '{"type":"string"}',
    "numeric": '{"type":"number"}',
    "integer": '{"type":"integer","minimum":-2147483648,"maximum":2147483647}',
    "bigint": '{"type":"integer"}',
    "date": '{"type":"string","pattern":"^%s$","description":"date YYYY-MM-DD"}' % DATE_PATTERN,
    "boolean": '{"type":"boolean"}',
}


def jsonb_key_order(keys):
    return sorted(keys, key=lambda k: (len(k.encode()), k.encode()))


def short_form_schema(fields):
    """fields: [(name, type, nullable)], type a name or a list of enum strings."""
    props, req = [], []
    for name, typ, nullable in fields:
        if isinstance(typ, list):
            vals = [json.dumps(v) for v in typ] + (["null"] if nullable else [])
            s = '{"enum":[%s]}' % ",".join(vals)
        else:
            s = TYPE_SCHEMA[typ]
            if nullable:
                s = '{"anyOf":[%s,{"type":"null"}]}' % s
        props.append('%s:%s' % (json.dumps(name), s))
        req.append(json.dumps(name))
    return ('{"type":"object","properties":{%s},"required":[%s],"additionalProperties":false}'
            % (",".join(props), ",".join(req)))


def short_form_text(fields):
    parts = []
    for name, typ, nullable in fields:
        if isinstance(typ, list):
            v = json.dumps(typ + ([None] if nullable else []))
        else:
            v = json.dumps(typ + ("?" if nullable else ""))
        parts.append("%s: %s" % (json.dumps(name), v))
    return "{" + ", ".join(parts) + "}"


# ---- vocabularies ----
FIRST = ("Jane Mark Anna Peter Laura David Maria Thomas Sophie Daniel Emma Lukas Olivia Jonas Mia Felix "
         "Sarah Paul Nina Martin Julia Kevin Lena Simon Clara Robert Elena Marco Ines Tom Hannah Oscar "
         "Alice Victor Rosa Henrik Priya Omar Yuki Carlos Fatima Ivan Chen Amara Leon Greta Diego Noor "
         "Samuel Eva Rahul Ingrid Mateo Zoe Ali Karin Pablo Wei Linda Erik").split()
LAST = ("Holloway Bauer Schmidt Novak Rossi Dubois Jensen Kowalski Smith Brown Garcia Müller Nilsson "
        "Costa Petrov Tanaka Okafor Murphy Weber Fischer Martin Lopez Berg Larsen Moreau Silva Kim "
        "Wagner Hughes Dahl Ivanova Horvat Keller Brennan Lindqvist Ferreira Hoffmann Varga Nakamura "
        "Patel Ahmed Schulz Baker Kaya Olsen Romano Sato Walsh Fontaine Haas").split()
CO_A = ("Acme Norvik Brightwater Atlas Bluepeak Cedar Helix Ironwood Juniper Kestrel Lumen Meridian "
        "Northwind Oakridge Pinecrest Quantum Redfield Silverline Tidewater Vantage Westbrook Zenith "
        "Orion Falcon Granite Harbor Summit Riverside Evergreen Alpine Copper Delta Nova Polar Sterling "
        "Crescent Maple Beacon Horizon Cobalt").split()
CO_B = ("Logistics Foods Systems Labs Industries Trading Energy Health Retail Motors Software Consulting "
        "Media Pharma Textiles Freight Analytics Hotels Construction Robotics Dairy Coffee Telecom Insurance").split()
CO_C = ["", "", "", " GmbH", " Ltd", " Inc.", " AG", " LLC", " S.A.", " BV"]
SYL = "ka lo ver mi tra no bel ux an dro fi sel gor ta rin vex ol ma zen qui pra do lu bri sto ne kal em ar is".split()
CITIES = ("Berlin Hamburg Munich Vienna Zurich Paris Lyon Madrid Barcelona Lisbon Rome Milan Amsterdam "
          "Rotterdam Brussels Copenhagen Stockholm Oslo Helsinki Warsaw Prague Budapest Dublin London "
          "Manchester Leeds Boston Chicago Denver Seattle Austin Toronto Montreal Sydney Melbourne Tokyo "
          "Osaka Singapore Seoul Nairobi Lagos Cairo Dubai Mumbai Delhi Santiago Lima Bogota Porto Gdansk").split()
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
CURRENCIES = [("EUR", "€"), ("USD", "$"), ("GBP", "£"), ("CHF", None), ("SEK", None), ("JPY", None),
              ("CAD", None), ("AUD", None), ("NOK", None), ("PLN", None)]
PRODUCTS = ("espresso machine,office chair,laptop stand,standing desk,wireless headset,water filter,"
            "electric kettle,monitor arm,label printer,router,coffee grinder,desk lamp,backpack,"
            "rain jacket,running shoes,yoga mat,blender,air purifier,toaster,drill,smart watch,"
            "bike helmet,camping stove,keyboard,webcam,tablet case,thermos,vacuum cleaner,"
            "microwave oven,projector,server rack,pallet jack,safety gloves,forklift battery").split(",")
COLORS = "black white red blue green grey silver navy orange yellow beige teal".split()
MATERIALS = "steel aluminium oak bamboo leather cotton glass plastic ceramic wool titanium".split()
SYSTEMS = ("billing database,payment gateway,mail server,customer portal,order API,search cluster,"
           "VPN gateway,data warehouse,login service,file storage,build server,inventory service,"
           "message queue,web shop,reporting service,DNS resolver").split(",")
CAUSES = ["a disk filled up with log files", "an expired TLS certificate", "a failed network switch",
          "a bad configuration change", "a memory leak in the new release", "a power failure in the rack",
          "a stalled replication job", "a full connection pool", "a DNS misconfiguration",
          "a runaway batch job", "a faulty firmware update", "an overloaded load balancer"]
TEAMS = ["the on-call engineer", "the platform team", "the network team", "the database team",
         "the support desk", "the security team", "the operations team"]
PRIORITIES = ["low", "medium", "high", "critical"]
COMPETITORS = ["OrderFlow", "SalesHub", "Quickbase", "TradeLink", "Marketo", "ShopWise", "CloudCart"]
STAGES = ["lead", "negotiation", "won", "lost"]


def invent(rng, n=None):
    n = n or rng.choice([2, 2, 3])
    return "".join(rng.choice(SYL) for _ in range(n)).capitalize()


def company(rng):
    a = rng.choice(CO_A) if rng.random() < 0.5 else invent(rng)
    return a + " " + rng.choice(CO_B) + rng.choice(CO_C)


def person(rng):
    last = rng.choice(LAST) if rng.random() < 0.6 else invent(rng)
    return rng.choice(FIRST) + " " + last


def rand_date(rng):
    y, m = rng.randint(2018, 2028), rng.randint(1, 12)
    d = rng.randint(1, 28)
    return (y, m, d)


def iso(d):
    return "%04d-%02d-%02d" % d


def fmt_date(rng, d):
    y, m, dd = d
    f = rng.randrange(7)
    if f == 0:
        return iso(d)
    if f == 1:
        return "%d %s %d" % (dd, MONTHS[m - 1], y)
    if f == 2:
        return "%s %d, %d" % (MONTHS[m - 1], dd, y)
    if f == 3:
        return "%d %s %d" % (dd, MONTHS[m - 1][:3], y)
    if f == 4:
        return "%02d.%02d.%d" % (dd, m, y)
    if f == 5:
        return "%d/%02d/%02d" % (y, m, dd)
    return "%s %d, %d" % (MONTHS[m - 1][:3], dd, y)


def rand_amount(rng):
    """(json number text, text in the document with the currency, code)."""
    mag = 10 ** rng.uniform(1, 5.3)
    cents = rng.random() < 0.7
    v = round(mag, 2) if cents else int(mag)
    num = ("%.2f" % v) if cents else str(v)
    code, sym = rng.choice(CURRENCIES)
    ip, _, fp = num.partition(".")
    shown = ip
    if rng.random() < 0.5 and len(ip) > 3:
        shown = "{:,}".format(int(ip))
    if fp:
        shown += "." + fp
    r = rng.random()
    if sym and r < 0.3:
        text = sym + shown
    elif r < 0.65:
        text = shown + " " + code
    else:
        text = code + " " + shown
    return num, text, code


def rand_id(rng, prefix):
    n = str(rng.randint(100, 999999))
    return (prefix + n) if prefix else n


# ---- documents: each returns (kind, text, facts) ----
# facts: name -> (value for JSON, short-form type); plus "_sum": summary pieces

def doc_invoice(rng, filler):
    vendor, cust = company(rng), company(rng)
    num = rand_id(rng, rng.choice(["INV-", "INV-", "", "F-", "2024-"]))
    amt, amt_text, cur = rand_amount(rng)
    d, due = rand_date(rng), rand_date(rng)
    d_text, due_text = fmt_date(rng, d), fmt_date(rng, due)
    city = rng.choice(CITIES)
    qty, prod = rng.randint(1, 400), rng.choice(PRODUCTS)
    has_due = rng.random() < 0.6
    if rng.random() < 0.35:
        lines = ["Invoice %s" % num, "From: %s, %s" % (vendor, city), "Bill to: %s" % cust,
                 "Date: %s" % d_text]
        if has_due:
            lines.append("Due: %s" % due_text)
        lines += ["Item: %d x %s" % (qty, prod), "Total: %s" % amt_text]
        text = "\n".join(lines)
    else:
        s = ["%s issued invoice %s to %s on %s." % (vendor, num, cust, d_text),
             "It covers %d units of %s and totals %s." % (qty, prod + ("s" if qty > 1 else ""), amt_text)]
        if has_due:
            s.append(rng.choice(["Payment is due by %s.", "The due date is %s.", "Please pay before %s."]) % due_text)
        s.append(rng.choice(["The goods were shipped from %s.", "Delivery went to the %s office.",
                             "The supplier is based in %s."]) % city)
        s += rng.sample(FILL_INVOICE, min(filler, len(FILL_INVOICE)))
        head, tail = s[:1], s[1:]
        rng.shuffle(tail)
        text = " ".join(head + tail)
    facts = {
        "customer": (cust, "text"), "vendor": (vendor, "text"), "invoice_number": (num, "text"),
        "amount": (amt, "numeric"), "currency": (cur, "text"), "date": (iso(d), "date"),
        "due_date": (iso(due) if has_due else None, "date"), "city": (city, "text"),
        "quantity": (str(qty), "integer"), "product": (prod, "text"),
    }
    summ = [("%s invoiced %s %s for %s units of %s on %s." % (vendor, cust, amt_text, qty, prod, d_text),
             ["customer", "amount", "date"]),
            ("Invoice %s is due %s." % (num, due_text) if has_due else "Invoice number %s." % num, ["due_date"]),
            ("Location: %s." % city, [])]
    short = "%s invoiced %s %s." % (vendor, cust, amt_text)
    return "invoice", text, facts, summ, short, {"customer": cust, "amount": amt_text, "date": d_text}


FILL_INVOICE = ["Prices include the agreed discount.", "Thank you for your business.",
                "Bank details are on the second page.", "Late payments incur a fee of two percent.",
                "The order was placed by the purchasing department.", "Questions go to the accounts team.",
                "This replaces the draft sent last week.", "VAT is shown separately."]


def doc_incident(rng, filler):
    sysname, cause, team = rng.choice(SYSTEMS), rng.choice(CAUSES), rng.choice(TEAMS)
    d = rand_date(rng)
    d_text = fmt_date(rng, d)
    h1, m1 = rng.randint(0, 22), rng.choice([0, 5, 10, 15, 20, 30, 40, 45, 50])
    dur = rng.randint(5, 300)
    h2, m2 = divmod(h1 * 60 + m1 + dur, 60)
    h2 %= 24
    t1, t2 = "%02d:%02d" % (h1, m1), "%02d:%02d" % (h2, m2)
    pri = rng.choice(PRIORITIES)
    rep = person(rng)
    city = rng.choice(CITIES)
    lost = rng.random() < 0.3
    s = ["On %s the %s was unavailable from %s to %s UTC after %s." % (d_text, sysname, t1, t2, cause),
         "Severity: %s." % pri if rng.random() < 0.5 else "The incident was rated %s priority." % pri,
         "%s fixed it and restored the service." % team.capitalize(),
         "It was reported by %s from the %s site." % (rep, city),
         "Some data was lost." if lost else "No data was lost."]
    s += rng.sample(FILL_INCIDENT, min(filler, len(FILL_INCIDENT)))
    head, tail = s[:1], s[1:]
    rng.shuffle(tail)
    text = " ".join(head + tail)
    facts = {"system": (sysname, "text"), "date": (iso(d), "date"), "start": (t1, "text"),
             "end": (t2, "text"), "priority": (pri, PRIORITIES), "reporter": (rep, "text"),
             "site": (city, "text"), "data_lost": (lost, "boolean"), "cause": (cause, "text")}
    summ = [("The %s was down on %s from %s to %s after %s." % (sysname, d_text, t1, t2, cause), ["date"]),
            ("Reported by %s, %s priority." % (rep, pri), ["reporter"]),
            ("Some data was lost." if lost else "No data was lost.", [])]
    short = "%s outage on %s." % (sysname.capitalize(), d_text)
    return "incident", text, facts, summ, short, {"person": rep, "date": d_text}


FILL_INCIDENT = ["Customers saw error pages during that time.", "Monitoring raised an alert within minutes.",
                 "A post-mortem is scheduled for next week.", "Action items: add an alert and review the runbook.",
                 "The standby took over only partly.", "Support received several calls.",
                 "The change had passed review.", "Backups were verified afterwards."]

TICKET_CAT = {
    "billing": ["was charged twice for order %s", "asks why the invoice for order %s is higher than the quote",
                "wants a refund for order %s"],
    "technical": ["reports that the %s from order %s stopped working", "cannot connect the %s from order %s",
                  "says the %s from order %s shows an error on start"],
    "shipping": ["has not received order %s yet", "received order %s damaged",
                 "says order %s was delivered to the wrong address"],
    "account": ["cannot log in to the account used for order %s", "wants to change the email of the account for order %s",
                "asks to close the account linked to order %s"],
}


def doc_ticket(rng, filler):
    cust, prod = person(rng), rng.choice(PRODUCTS)
    cat = rng.choice(list(TICKET_CAT))
    order = rand_id(rng, rng.choice(["", "", "#", "ORD-"]))
    amt, amt_text, cur = rand_amount(rng)
    d = rand_date(rng)
    d_text = fmt_date(rng, d)
    pri = rng.choice(PRIORITIES)
    status = rng.choice(["open", "pending", "closed"])
    tmpl = rng.choice(TICKET_CAT[cat])
    issue = tmpl % ((prod, order) if tmpl.count("%s") == 2 else (order,))
    mood = rng.choice(["negative", "neutral", "positive"])
    mood_s = {"negative": rng.choice(["The customer is angry and threatens to cancel.", "She is very unhappy with the service."]),
              "neutral": rng.choice(["The customer asks for an update.", "No deadline was given."]),
              "positive": rng.choice(["The customer thanked the agent for the quick help.", "He was pleased with the answer."])}[mood]
    s = ["%s %s, placed on %s." % (cust, issue, d_text),
         "The order value is %s." % amt_text,
         "Priority: %s." % pri, "Status: %s." % status, mood_s]
    s += rng.sample(FILL_TICKET, min(filler, len(FILL_TICKET)))
    head, tail = s[:1], s[1:]
    rng.shuffle(tail)
    text = ("Ticket %s\n" % rand_id(rng, "TCK-") if rng.random() < 0.3 else "") + " ".join(head + tail)
    facts = {"customer": (cust, "text"), "order_number": (order, "text"), "amount": (amt, "numeric"),
             "currency": (cur, "text"), "date": (iso(d), "date"), "priority": (pri, PRIORITIES),
             "status": (status, ["open", "pending", "closed"]), "product": (prod if "%s from" in tmpl else None, "text")}
    summ = [("%s %s (%s), placed on %s." % (cust, issue, amt_text, d_text), ["customer", "amount", "date"]),
            ("Priority %s, status %s." % (pri, status), []), (mood_s, [])]
    short = "%s: %s issue, order %s." % (cust, cat, order)
    return "ticket", text, facts, summ, short, {"person": cust, "amount": amt_text, "date": d_text,
                                               "category": cat, "mood": mood}


FILL_TICKET = ["The agent asked for photos.", "A callback was promised within two days.",
               "The customer has contacted us before.", "The case was forwarded to the second level.",
               "Our policy allows returns within 30 days.", "The customer prefers email."]


def doc_sales(rng, filler):
    co, contact = company(rng), person(rng)
    d = rand_date(rng)
    d_text = fmt_date(rng, d)
    amt, amt_text, cur = rand_amount(rng)
    units = rng.randint(2, 500)
    comp, stage = rng.choice(COMPETITORS), rng.choice(STAGES)
    city = rng.choice(CITIES)
    what = rng.choice(["stores", "offices", "warehouses", "licenses", "vehicles", "clinics"])
    s = ["Met with %s of %s on %s in %s." % (contact, co, d_text, city),
         "They want our platform for %d %s." % (units, what),
         "Budget is about %s for the first year." % amt_text,
         "Main competitor is %s." % comp,
         "Deal stage: %s." % stage]
    s += rng.sample(FILL_SALES, min(filler, len(FILL_SALES)))
    head, tail = s[:1], s[1:]
    rng.shuffle(tail)
    text = " ".join(head + tail)
    facts = {"company": (co, "text"), "contact": (contact, "text"), "date": (iso(d), "date"),
             "budget": (amt, "numeric"), "currency": (cur, "text"), "units": (str(units), "integer"),
             "competitor": (comp, "text"), "stage": (stage, STAGES), "city": (city, "text")}
    summ = [("%s (%s) wants the platform for %d %s, budget %s." % (co, contact, units, what, amt_text),
             ["company", "amount"]),
            ("Met on %s in %s." % (d_text, city), ["date"]), ("Competitor %s, stage %s." % (comp, stage), [])]
    short = "%s, budget %s." % (co, amt_text)
    return "sales", text, facts, summ, short, {"company": co, "amount": amt_text, "date": d_text}


FILL_SALES = ["Next step: a pilot in May.", "They liked the reporting features.",
              "Decision expected by end of the quarter.", "Legal wants to review the contract first.",
              "The CFO joined the second half of the call.", "We sent the price list afterwards."]

DOC_MAKERS = [doc_invoice, doc_incident, doc_ticket, doc_sales]
KIND_LABELS = {"invoice": "invoice", "incident": "incident report", "ticket": "support ticket", "sales": "sales note"}
FIELD_ALIASES = {"customer": ["customer", "client", "customer_name"], "vendor": ["vendor", "supplier"],
                 "invoice_number": ["invoice_number", "invoice_no", "number"], "amount": ["amount", "total"],
                 "date": ["date"], "due_date": ["due_date", "due"], "company": ["company", "account"],
                 "budget": ["budget", "amount"], "reporter": ["reporter", "reported_by"],
                 "order_number": ["order_number", "order"], "system": ["system", "service"]}
UNRELATED = [("email", "text"), ("phone", "text"), ("discount", "numeric"), ("tracking_number", "text")]


# ---- tasks ----

def task_extract(rng, doc):
    kind, text, facts, _, _, _ = doc
    names = list(facts)
    k = rng.randint(1, min(5, len(names)))
    chosen = rng.sample(names, k)
    fields, answer = [], {}
    used = set()
    for n in chosen:
        val, typ = facts[n]
        key = rng.choice(FIELD_ALIASES.get(n, [n]))
        if key in used:
            continue
        used.add(key)
        nullable = val is None or rng.random() < 0.25
        if typ == "integer" and rng.random() < 0.3:
            typ = "bigint"
        fields.append((key, typ, nullable))
        answer[key] = val
    if rng.random() < 0.12:
        key, typ = rng.choice(UNRELATED)
        if key not in used:
            fields.append((key, typ, True))
            answer[key] = None
    order = jsonb_key_order([f[0] for f in fields])
    fmap = {f[0]: f for f in fields}
    fields = [fmap[k] for k in order]
    parts = []
    for key, typ, _ in fields:
        v = answer[key]
        if v is None:
            parts.append('"%s":null' % key)
        elif typ in ("numeric", "integer", "bigint"):
            parts.append('"%s":%s' % (key, v))
        elif typ == "boolean":
            parts.append('"%s":%s' % (key, "true" if v else "false"))
        else:
            parts.append('"%s":%s' % (key, json.dumps(v, ensure_ascii=False)))
    ans = "{" + ",".join(parts) + "}"
    return {"task": "extract", "schema_json": short_form_schema(fields), "short_form": short_form_text(fields),
            "system": SYS_EXTRACT, "doc": text, "answer": ans, "mode": "n",
            "meta": {"expected": {k: answer[k] for k in order}, "kind": kind,
                     "enum": [f[0] for f in fields if isinstance(f[1], list)]}}


def task_classify(rng, doc):
    kind, text, facts, _, _, extra = doc
    options = [("kind", list(KIND_LABELS.values()), KIND_LABELS[kind], None)]
    if kind == "ticket":
        options.append(("category", ["billing", "technical", "shipping", "account"], extra["category"], None))
        options.append(("sentiment", ["positive", "neutral", "negative"], extra["mood"], None))
    if "priority" in facts:
        options.append(("priority", PRIORITIES, facts["priority"][0], None))
    what, labels, right, _ = rng.choice(options)
    labels = list(labels)
    if len(labels) > 2 and rng.random() < 0.3:
        others = [l for l in labels if l != right]
        labels = [right] + rng.sample(others, rng.randint(1, len(others)))
    rng.shuffle(labels)
    instr = None
    if rng.random() < 0.25:
        instr = {"kind": "What kind of document is it?", "category": "Which team should handle it?",
                 "sentiment": "How does the customer feel?", "priority": "How urgent is it?"}[what]
    return {"task": "classify", "system": SYS_CLASSIFY, "instruction": classify_instruction(labels, instr),
            "doc": text, "answer": json.dumps(right), "mode": "n",
            "meta": {"labels": labels, "expected": right, "what": what, "instruction": instr}}


FOCUS = {"the amount": "amount", "the customer": "customer", "dates": "date", "the cause": None,
         "the money involved": "amount"}


def task_summarize(rng, doc):
    kind, text, facts, summ, short, ents = doc
    n = rng.choice([8, 12, 15, 20, 25, 30, 30, 40, 50, 60])
    focus = rng.choice(list(FOCUS)) if rng.random() < 0.2 else None
    pieces = list(summ)
    if focus and FOCUS[focus]:
        pieces.sort(key=lambda p: 0 if FOCUS[focus] in p[1] else 1)
    out = []
    if len(pieces[0][0].split()) > n:
        out = [" ".join(short.split()[:n])]
        pieces = pieces[1:]
    for sent, _ in pieces:
        if len(" ".join(out + [sent]).split()) <= n:
            out.append(sent)
    ans = " ".join(out)
    return {"task": "summarize", "system": SYS_SUMMARIZE, "instruction": summarize_instruction(n, focus),
            "doc": text, "answer": ans, "mode": "p", "meta": {"max_words": n, "focus": focus, "entities": ents}}


STYLES = [None, None, None, "short", "friendly", "formal", "catchy", "one-line", "technical"]


class Raw:
    """A numeric as PostgreSQL prints it (the text as stored)."""
    def __init__(self, text):
        self.text = text


def jsonb_pretty(obj):
    def val(v, ind):
        if isinstance(v, dict):
            ks = jsonb_key_order(list(v))
            if not ks:
                return "{\n%s}" % (" " * ind)
            return "{\n" + ",\n".join(" " * (ind + 4) + json.dumps(k, ensure_ascii=False) + ": " + val(v[k], ind + 4)
                                      for k in ks) + "\n" + " " * ind + "}"
        if isinstance(v, list):
            return "[\n" + ",\n".join(" " * (ind + 4) + val(x, ind + 4) for x in v) + "\n" + " " * ind + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, Raw):
            return v.text
        return str(v)
    return val(obj, 0)


def task_describe(rng, _doc):
    prod = rng.choice(PRODUCTS)
    brand = rng.choice(CO_A) if rng.random() < 0.5 else invent(rng)
    model = brand + " " + rng.choice(["Pro", "One", "Max", "Lite", "X", "Go", "Air", "Plus"]) + \
        (" " + str(rng.randint(2, 900)) if rng.random() < 0.5 else "")
    price = "%.2f" % rng.uniform(5, 3000)
    row = {"id": rng.randint(1, 9999), "name": model, "category": prod, "price": price}
    if rng.random() < 0.7:
        row["color"] = rng.choice(COLORS)
    if rng.random() < 0.6:
        row["material"] = rng.choice(MATERIALS)
    if rng.random() < 0.4:
        row["weight_kg"] = "%.1f" % rng.uniform(0.1, 40)
    if rng.random() < 0.5:
        row["stock"] = rng.randint(0, 900)
    if rng.random() < 0.3:
        row["currency"] = rng.choice(CURRENCIES)[0]
    if rng.random() < 0.2:
        row["description"] = None
    style = rng.choice(STYLES)
    cur = row.get("currency", "")
    pr = price + (" " + cur if cur else "")
    adj = " ".join(x for x in [row.get("color"), row.get("material")] if x)
    a = "The %s is a %s%s" % (model, (adj + " ") if adj else "", prod)
    if style in ("short", "one-line"):
        ans = a + " for %s." % pr
    else:
        ans = a + ", priced at %s." % pr
        if "weight_kg" in row:
            ans += " It weighs %s kg." % row["weight_kg"]
        if "stock" in row:
            ans += (" %d units are in stock." % row["stock"]) if row["stock"] > 0 else " It is currently out of stock."
        if style == "catchy":
            ans = "Meet the %s! " % model + ans
        elif style == "friendly":
            ans += " A great choice for every day."
        elif style == "formal":
            ans = ans.replace("The %s is" % model, "The %s is offered as" % model, 1)
    row_json = {k: (Raw(v) if k in ("price", "weight_kg") else v) for k, v in row.items() if v is not None}
    pretty = jsonb_pretty(row_json)
    row_json = {k: (v.text if isinstance(v, Raw) else v) for k, v in row_json.items()}
    return {"task": "describe", "system": SYS_DESCRIBE, "instruction": describe_instruction(style),
            "doc": pretty, "answer": ans, "mode": "p", "meta": {"row": row_json, "style": style, "name": model}}


QUESTIONS = {
    "invoice": [("What is the total amount of this invoice?", lambda f, e: "The total is %s." % e["amount"]),
                ("Who is the customer?", lambda f, e: f["customer"][0] + ".")],
    "incident": [("When did the outage happen?", lambda f, e: "On %s, from %s to %s UTC." % (e["date"], f["start"][0], f["end"][0])),
                 ("Which system was affected?", lambda f, e: "The %s." % f["system"][0])],
    "ticket": [("What does the customer want?", None), ("Who wrote this ticket?", lambda f, e: f["customer"][0] + ".")],
    "sales": [("What is the budget?", lambda f, e: "About %s for the first year." % e["amount"]),
              ("Who is the competitor?", lambda f, e: f["competitor"][0] + ".")],
}


def task_generate(rng, doc):
    kind, text, facts, summ, _, ents = doc
    q, fn = rng.choice(QUESTIONS[kind])
    ans = fn(facts, ents) if fn else summ[0][0]
    user = (q + "\n\n" + text) if rng.random() < 0.6 else (text + "\n\n" + q)
    return {"task": "generate", "system": "", "instruction": "", "doc": user, "answer": ans, "mode": "p",
            "meta": {"question": q}}


QUOTE_QUESTIONS = ["Quote the %s exactly as the document writes it.", "What is the %s? Copy it from the document.",
                   "Copy the %s from the document, nothing else."]


def task_quote(rng, doc):
    """A value copied from the document as it is written there (a span of
    the document's own tokens): practice for the copying extraction needs."""
    kind, text, facts, _, _, ents = doc
    spans = [(n.replace("_", " "), v) for n, (v, _) in facts.items() if isinstance(v, str) and v and v in text]
    spans += [(n, v) for n, v in ents.items() if isinstance(v, str) and v and v in text]
    if not spans:
        return task_generate(rng, doc)
    what, val = rng.choice(spans)
    q = rng.choice(QUOTE_QUESTIONS) % what
    user = (q + "\n\n" + text) if rng.random() < 0.6 else (text + "\n\n" + q)
    return {"task": "quote", "system": "", "instruction": "", "doc": user, "answer": val, "mode": "p",
            "meta": {"question": q}}


REPEAT_ASKS = ["Repeat the following text exactly.", "Copy this text word for word.", "Write this text again, unchanged."]


def task_repeat(rng, doc):
    """A span of the document written again: pure copying, which the model
    can only learn by attending back to the document token by token (the
    mechanism extraction, quotes and summaries need to take values from
    the document instead of inventing likely ones)."""
    words = doc[1].split()
    n = rng.randint(4, min(30, len(words)))
    at = rng.randint(0, len(words) - n)
    span = " ".join(words[at:at + n])
    return {"task": "repeat", "system": "", "instruction": "", "doc": rng.choice(REPEAT_ASKS) + "\n\n" + span,
            "answer": span, "mode": "p", "meta": {}}


TASKS = [(task_extract, 0.34), (task_classify, 0.10), (task_summarize, 0.14), (task_describe, 0.08),
         (task_generate, 0.04), (task_quote, 0.12), (task_repeat, 0.18)]


def make_sample(rng):
    filler = rng.choice([0, 0, 1, 1, 2, 3])
    doc = rng.choice(DOC_MAKERS)(rng, filler)
    r, acc = rng.random(), 0.0
    for fn, w in TASKS:
        acc += w
        if r < acc:
            break
    s = fn(rng, doc)
    s["meta"]["filler"] = filler
    return s


def esc(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def unesc(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append({"n": "\n", "t": "\t"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def run_prep(records):
    tool = os.path.join(ROOT, "bin", "phi3-trainprep")
    vocab = os.path.join(ROOT, "test", "data", "ggml-vocab-phi-3.gguf")
    p = subprocess.run([tool, "--vocab", vocab], input="".join(r + "\n" for r in records).encode(),
                       stdout=subprocess.PIPE, check=True)
    lines = p.stdout.decode().split("\n")[:len(records)]
    if len(lines) != len(records):
        sys.exit("phi3-trainprep gave %d lines for %d records" % (len(lines), len(records)))
    return lines


def describe_schemas(samples):
    todo = sorted({s["schema_json"] for s in samples if s["task"] == "extract"})
    out = run_prep(["S\t" + esc(j) for j in todo])
    m = {}
    for j, d in zip(todo, out):
        if d.startswith("ERROR"):
            sys.exit("schema %s: %s" % (j, d))
        m[j] = unesc(d)
    return m


def finish(samples):
    shapes = describe_schemas(samples)
    recs = []
    for s in samples:
        if s["task"] == "extract":
            s["shape"] = shapes[s["schema_json"]]
            s["instruction"] = extract_instruction(s["shape"])
        s["user"] = s["instruction"] + s["doc"]
        recs.append("C\t%s\t%s\t%s\t%s" % (esc(s["system"]), esc(s["user"]), s["mode"], esc(s["answer"])))
    out = run_prep(recs)
    res = []
    for s, line in zip(samples, out):
        if line.startswith("ERROR"):
            continue
        p, a = line.split("|")
        s["prompt"] = [int(x) for x in p.split()]
        s["answer_ids"] = [int(x) for x in a.split()]
        if s["task"] == "extract":
            s["answer_ids"] = copy_tokens(s, *vocab())
        res.append(s)
    return res


_VOCAB = None


def vocab():
    """The vocabulary's pieces (id -> text) and their ids (text -> id), from the vocabulary GGUF."""
    global _VOCAB
    if _VOCAB is None:
        sys.path.insert(0, os.path.join(ROOT, "test", "reference"))
        import phi3_ref
        g = phi3_ref.GGUF(os.path.join(ROOT, "test", "data", "ggml-vocab-phi-3.gguf"))
        pieces = list(g.meta["tokenizer.ggml.tokens"])
        _VOCAB = (pieces, {t: i for i, t in enumerate(pieces)})
    return _VOCAB


def token_offsets(ids, text_of):
    """The text of a token run and the offset of every token boundary in it."""
    offs, t = [], 0
    for i in ids:
        offs.append(t)
        t += len(text_of(i))
    offs.append(t)
    return offs, "".join(text_of(i) for i in ids)


def copy_tokens(s, pc, index):
    """
    The extraction answer with every string value the document contains
    tokenized as a copy of the document's own tokens: in the document a
    value follows a space ("▁OR", "D", ...), in the JSON a quote, where the
    canonical tokens of the same text can differ ("ORD").  Any tokens of
    the right bytes satisfy the constrained decoder, so the answer is
    trained as the document's run with its first piece's twin without the
    "▁" ("OR", "D", ...): the value is copied token for token, the first
    one mapped.  Values whose run or twin is missing keep the canonical
    tokens; so do enum fields (the decoder completes those itself).
    """
    text_of = lambda i: pc[i].replace("\u2581", " ")
    ans = s["answer_ids"]
    offs, ans_text = token_offsets(ans, text_of)
    prompt = s["prompt"]
    ptext = [text_of(i) for i in prompt]
    for key, v in s["meta"]["expected"].items():
        if not isinstance(v, str) or not v or key in s["meta"].get("enum", []):
            continue
        at = ans_text.find('"%s":"%s"' % (key, v))
        if at < 0:
            continue
        a0 = at + len(key) + 4
        if a0 not in offs or a0 + len(v) not in offs:
            continue
        ia, ib = offs.index(a0), offs.index(a0 + len(v))
        run = None
        for p0 in range(len(prompt)):
            if not ptext[p0].startswith(" "):
                continue
            acc, q = "", p0
            while q < len(prompt) and len(acc) < len(v) + 1:
                acc += ptext[q]
                q += 1
            if acc == " " + v:
                first = pc[prompt[p0]][1:]
                if first == "":
                    run = prompt[p0 + 1:q]
                elif first in index:
                    run = [index[first]] + prompt[p0 + 1:q]
                break
        if run:
            ans = ans[:ia] + run + ans[ib:]
            offs, ans_text = token_offsets(ans, text_of)
    return ans


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", type=int, default=80000)
    ap.add_argument("--heldout", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=13)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name, n, seed in (("train", a.train, a.seed), ("heldout", a.heldout, a.seed + 1000)):
        rng = random.Random(seed)
        samples = finish([make_sample(rng) for _ in range(n)])
        with open(os.path.join(a.out, name + ".jsonl"), "w") as f:
            for s in samples:
                if name == "train":     # the trainer needs only these
                    s = {"task": s["task"], "prompt": s["prompt"], "answer_ids": s["answer_ids"],
                         "meta": {"filler": s["meta"]["filler"]}}
                f.write(json.dumps(s, ensure_ascii=False) + "\n")
        lens = sorted(len(s["prompt"]) + len(s["answer_ids"]) for s in samples)
        print("%s: %d samples, tokens median %d, p95 %d, max %d" % (name, len(samples), lens[len(lens) // 2],
              lens[int(len(lens) * .95)], lens[-1]))


if __name__ == "__main__":
    main()
