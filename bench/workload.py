"""A seeded helpdesk workload: new-ticket mails and their follow-ups, as `.eml` bytes.

The same seed gives the same mails, byte for byte, so two systems fed from one workload see
the same bodies and structure. A mail is described once (`Mail`: language, sender, subject,
text, HTML, attachment) and rendered by `render()`; a follow-up is rendered per system, with
the ticket named as that system threads (its subject tag, an `In-Reply-To` its own
acknowledgement's Message-ID), everything else equal.

What the workload holds, by the issue (#12):

- languages English, Russian, German and French in turn (UTF-8 subjects and bodies; a
  non-ASCII subject or display name goes out RFC 2047 encoded, as mail clients send it);
- bodies: 60 % text/plain only, 30 % multipart/alternative (text and HTML), 10 % HTML only;
- 5 % of the mails carry a 100 KB attachment (half of the file names in Cyrillic, RFC 2231);
- `closed_indices()`: the 10 % of tickets closed between the two phases, so their follow-ups
  go to closed tickets.
"""

from __future__ import annotations

import html
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

LANGUAGES = ("en", "ru", "de", "fr")
SUPPORT = "support@example.com"
ATTACHMENT_BYTES = 100 * 1024

FIRST = {
    "en": ["John", "Mary", "Peter", "Linda", "James", "Susan", "Robert", "Karen"],
    "ru": ["Иван", "Ольга", "Пётр", "Наталья", "Сергей", "Елена", "Дмитрий", "Анна"],
    "de": ["Jürgen", "Käthe", "Günther", "Bärbel", "Stefan", "Anja", "Jörg", "Sabine"],
    "fr": ["Élodie", "François", "Hélène", "Jérôme", "Céline", "Loïc", "Amélie", "Benoît"],
}
LAST = {
    "en": ["Smith", "Brown", "Miller", "Wilson", "Taylor", "Clark", "Hall", "Young"],
    "ru": ["Петров", "Смирнова", "Кузнецов", "Попова", "Соколов", "Лебедева", "Козлов"],
    "de": ["Müller", "Schröder", "Weiß", "Groß", "Köhler", "Schäfer", "Krämer", "Fuchs"],
    "fr": ["Lefèvre", "Girard", "Bérenger", "Mercier", "Gaël", "Dupré", "Rousseau", "Fabre"],
}
# ASCII local parts for the addresses (display names carry the real spelling).
LOGIN = {
    "en": "customer", "ru": "klient", "de": "kunde", "fr": "client",
}
SUBJECTS = {
    "en": ["Printer {n} does not print", "Export fails with error {n}",
           "Cannot log in since the update", "Invoice {n} is wrong",
           "Question about licence {n}", "The app crashes on start"],
    "ru": ["Принтер {n} не печатает", "Ошибка {n} при выгрузке отчёта",
           "Не могу войти после обновления", "Неверный счёт № {n}",
           "Вопрос по лицензии {n}", "Приложение падает при запуске"],
    "de": ["Drucker {n} druckt nicht", "Export schlägt mit Fehler {n} fehl",
           "Anmeldung nach dem Update unmöglich", "Rechnung {n} ist fehlerhaft",
           "Frage zur Lizenz {n}", "Die App stürzt beim Start ab"],
    "fr": ["L'imprimante {n} n'imprime plus", "L'export échoue avec l'erreur {n}",
           "Impossible de me connecter après la mise à jour", "Facture {n} erronée",
           "Question sur la licence {n}", "L'application plante au démarrage"],
}
GREETING = {"en": "Hello,", "ru": "Здравствуйте!", "de": "Guten Tag,", "fr": "Bonjour,"}
SENTENCES = {
    "en": ["Since yesterday the export stops half way with an error message.",
           "I have already restarted the computer twice, it did not help.",
           "The same happens on my colleague's machine.",
           "We use version 4.2 on Windows 11.",
           "Could you please tell me what to do next?",
           "This is urgent, our month-end closing depends on it.",
           "I attached a screenshot of the error window.",
           "The log file says: connection reset by peer."],
    "ru": ["Со вчерашнего дня выгрузка останавливается на середине с ошибкой.",
           "Я уже дважды перезагрузил компьютер, это не помогло.",
           "То же самое происходит на компьютере коллеги.",
           "У нас версия 4.2 на Windows 11.",
           "Подскажите, пожалуйста, что делать дальше?",
           "Это срочно: от этого зависит закрытие месяца.",
           "Прикладываю снимок экрана с ошибкой.",
           "В журнале написано: соединение сброшено удалённой стороной."],
    "de": ["Seit gestern bricht der Export auf halber Strecke mit einer Fehlermeldung ab.",
           "Ich habe den Rechner schon zweimal neu gestartet, es hat nichts geändert.",
           "Auf dem Gerät meiner Kollegin passiert dasselbe.",
           "Wir benutzen Version 4.2 unter Windows 11.",
           "Können Sie mir bitte sagen, was ich als Nächstes tun soll?",
           "Es ist dringend, unser Monatsabschluss hängt davon ab.",
           "Einen Screenshot des Fehlerfensters habe ich angehängt.",
           "Im Protokoll steht: Verbindung vom Gegenüber zurückgesetzt."],
    "fr": ["Depuis hier, l'export s'arrête à mi-chemin avec un message d'erreur.",
           "J'ai déjà redémarré l'ordinateur deux fois, ça n'a rien changé.",
           "La même chose se produit sur le poste de ma collègue.",
           "Nous utilisons la version 4.2 sous Windows 11.",
           "Pourriez-vous me dire ce que je dois faire ensuite ?",
           "C'est urgent : notre clôture de fin de mois en dépend.",
           "J'ai joint une capture d'écran de la fenêtre d'erreur.",
           "Le journal indique : connexion réinitialisée par le correspondant."],
}
FOLLOW = {
    "en": ["Thank you, but the problem is still there.", "Any news on this?",
           "I tried what you suggested; now it fails with error 17.",
           "It happened again this morning."],
    "ru": ["Спасибо, но проблема осталась.", "Есть ли новости?",
           "Я попробовал то, что вы предложили; теперь ошибка 17.",
           "Сегодня утром это повторилось."],
    "de": ["Danke, aber das Problem besteht weiterhin.", "Gibt es Neuigkeiten?",
           "Ich habe Ihren Vorschlag ausprobiert; jetzt kommt Fehler 17.",
           "Heute früh ist es wieder passiert."],
    "fr": ["Merci, mais le problème est toujours là.", "Avez-vous du nouveau ?",
           "J'ai essayé votre suggestion ; maintenant l'erreur 17 apparaît.",
           "C'est encore arrivé ce matin."],
}
SIGN = {"en": "Best regards,", "ru": "С уважением,", "de": "Mit freundlichen Grüßen",
        "fr": "Cordialement,"}
WROTE = {"en": "{who} wrote:", "ru": "{who} написал(а):", "de": "{who} schrieb:",
         "fr": "{who} a écrit :"}
FILE_NAMES = {
    "en": "screenshot-{n}.png", "ru": "скриншот ошибки {n}.png",
    "de": "Rechnung_{n}.pdf", "fr": "facture-{n}.pdf",
}
CYRILLIC_FILE_NAMES = ["счёт-фактура {n}.pdf", "журнал ошибок {n}.txt", "снимок экрана {n}.png"]
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Mail:
    """One customer mail, before rendering."""

    index: int
    kind: str                     # "new" or "follow"
    language: str
    name: str                     # display name of the sender
    address: str
    subject: str                  # without any ticket tag
    text: str
    html: str | None              # an HTML alternative, or the only body when html_only
    html_only: bool
    attachment: tuple[str, bytes] | None
    message_id: str               # with angle brackets
    date: datetime

    @property
    def has_html(self) -> bool:
        return self.html is not None


def _body_shape(rng: random.Random) -> tuple[bool, bool]:
    """(has HTML, HTML only): 60 % plain, 30 % alternative, 10 % HTML only."""
    roll = rng.random()
    return (roll >= 0.6, roll >= 0.9)


def _to_html(text: str) -> str:
    paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>"
                         for p in text.split("\n\n"))
    return ("<html><head><meta charset=\"utf-8\"></head><body style=\"font-family: Arial\">"
            f"<div>{paragraphs}</div></body></html>")


def _attachment(rng: random.Random, language: str, n: int) -> tuple[str, bytes]:
    if rng.random() < 0.5:
        name = rng.choice(CYRILLIC_FILE_NAMES).format(n=n)
    else:
        name = FILE_NAMES[language].format(n=n)
    return name, rng.randbytes(ATTACHMENT_BYTES)


def new_tickets(count: int, seed: int) -> list[Mail]:
    """`count` first mails, one customer each (so no acknowledgement is held back by a cap on
    automatic replies to one address)."""
    rng = random.Random(f"{seed}-new")
    mails = []
    for i in range(count):
        lang = LANGUAGES[i % len(LANGUAGES)]
        first, last = rng.choice(FIRST[lang]), rng.choice(LAST[lang])
        subject = rng.choice(SUBJECTS[lang]).format(n=rng.randint(10, 9999))
        sentences = rng.sample(SENTENCES[lang], rng.randint(2, 6))
        text = "\n\n".join([GREETING[lang], "\n".join(sentences),
                            f"{SIGN[lang]}\n{first} {last}"])
        has_html, html_only = _body_shape(rng)
        attachment = _attachment(rng, lang, i) if rng.random() < 0.05 else None
        mails.append(Mail(
            index=i, kind="new", language=lang, name=f"{first} {last}",
            address=f"{LOGIN[lang]}.{i}@{lang}.customer.example", subject=subject, text=text,
            html=_to_html(text) if has_html else None, html_only=html_only,
            attachment=attachment, message_id=f"<peer-{seed}-new-{i}@customer.example>",
            date=START + timedelta(seconds=i)))
    return mails


def follow_ups(originals: Sequence[Mail], seed: int) -> list[Mail]:
    """One follow-up from each original's customer, quoting the start of the original."""
    rng = random.Random(f"{seed}-follow")
    mails = []
    for original in originals:
        lang = original.language
        quoted = "\n".join(f"> {line}" for line in original.text.splitlines()[:4])
        text = "\n\n".join([GREETING[lang], rng.choice(FOLLOW[lang]),
                            f"{SIGN[lang]}\n{original.name}",
                            WROTE[lang].format(who=original.name) + "\n" + quoted])
        has_html, html_only = _body_shape(rng)
        attachment = _attachment(rng, lang, original.index) if rng.random() < 0.05 else None
        mails.append(Mail(
            index=original.index, kind="follow", language=lang, name=original.name,
            address=original.address, subject=original.subject, text=text,
            html=_to_html(text) if has_html else None, html_only=html_only,
            attachment=attachment,
            message_id=f"<peer-{seed}-follow-{original.index}@customer.example>",
            date=original.date + timedelta(days=1)))
    return mails


def closed_indices(count: int, seed: int, share: float = 0.10) -> list[int]:
    """The tickets (by index) closed between the phases: `share` of them, at least one."""
    rng = random.Random(f"{seed}-closed")
    return sorted(rng.sample(range(count), max(1, round(count * share)) if count else 0))


def render(mail: Mail, *, subject: str | None = None, in_reply_to: str | None = None,
           references: Sequence[str] = ()) -> bytes:
    """The mail as a client sends it (CRLF line ends, RFC 2047 headers, MIME)."""
    msg = EmailMessage()
    msg["From"] = f"{mail.name} <{mail.address}>"
    msg["To"] = SUPPORT
    msg["Subject"] = subject if subject is not None else mail.subject
    msg["Date"] = format_datetime(mail.date)
    msg["Message-ID"] = mail.message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    msg["User-Agent"] = "peer-bench/1.0"
    if mail.html_only:
        assert mail.html is not None
        msg.set_content(mail.html, subtype="html")
    else:
        msg.set_content(mail.text)
        if mail.html is not None:
            msg.add_alternative(mail.html, subtype="html")
    if mail.attachment is not None:
        name, data = mail.attachment
        maintype, subtype = {"png": ("image", "png"), "pdf": ("application", "pdf"),
                             "txt": ("application", "octet-stream")}[name.rsplit(".", 1)[1]]
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=SMTP)
