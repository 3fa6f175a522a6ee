"""Is this reply an opt-out, and from what? The one owner of that reading.

The law asks for revocation "by any reasonable means" (FCC 2024 TCPA order; CTIA Messaging
Principles for the keywords; CAN-SPAM for e-mail), so a reply is read as a person would:

- in any case, spacing or Unicode form: text goes through :func:`legato.guard.normalize.normalize`
  (full-width, zero-width, homoglyphs), accents are dropped, letters spaced out ("S T O P"),
  stretched ("stooop") or written with digits ("5T0P") are joined back;
- as a keyword alone (STOP, ARRET, BAJA, ...), with or without polite words around it;
- as a plain request in English, French or Spanish (and the common keywords of German,
  Italian and Portuguese): "please stop texting me", "retirez-moi de votre liste",
  "no me manden más correos".

:func:`detect` gives one of three verdicts. ``revoke``: the reply is an opt-out. ``unclear``:
it may be one ("too many emails", "not interested", "wrong number", a negated or stray
keyword) and a person decides; until then marketing to the customer pauses. ``none``.

It also gives the scope: the channels the reply names ("no more emails" names e-mail), or
every channel ("STOPALL", "unsubscribe me from everything"). The channel a reply came in on
is added by the caller, who knows it.

The patterns were developed against ``tests/trust/optout_dev.jsonl``; their recall and
precision are measured on a separate labeled set, ``bench/data/optout_eval.jsonl``, by
``bench/optout_recall.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from legato.guard.normalize import normalize, strip_marks


POSSIBLE_OPT_OUT = "possible_opt_out"  # the review reason (and intent) of an unclear reply


class Verdict(str, Enum):
    revoke = "revoke"
    unclear = "unclear"
    none = "none"


@dataclass(frozen=True)
class OptOut:
    verdict: Verdict
    channels: frozenset[str] = field(default_factory=frozenset)  # channels the reply names
    every_channel: bool = False  # "STOPALL", "from everything"
    language: str = "en"  # of the phrase that matched: the confirmation is written in it
    evidence: str | None = None  # the words that decided, in folded form


# --- folding --------------------------------------------------------------------------------

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "$": "s", "@": "a"})


def fold(text: str) -> str:
    """Lower case, no accents, no disguise, words separated by one space (apostrophes kept)."""
    folded = strip_marks(normalize(text)).casefold().translate(_APOSTROPHES)
    folded = re.sub(r"[\w$@]*[a-z][\w$@]*", _letters, folded)  # "5T0P", "unsubscr1be", "$top"
    folded = re.sub(r"[^\w']+", " ", folded).replace("_", " ")
    folded = re.sub(r"(?<!\w)'|'(?!\w)", " ", folded)  # quotes, not apostrophes
    words = [_letters(word) for word in _join_spelled(folded.split())]
    return " ".join(re.sub(r"([a-z])\1{2,}", r"\1", word) for word in words)  # "stoooop", "pleeease"


def _letters(word: str | re.Match[str]) -> str:
    """Digits standing in for letters inside a word; a word of digits only (an order number) stays."""
    text = word if isinstance(word, str) else word.group(0)
    return text.translate(_LEET) if re.search(r"[a-z]", text) else text


def _join_spelled(words: list[str]) -> list[str]:
    """Letters spaced out ("s t o p", "5 t 0 p", "u n s u b") become one word; runs of three or more."""
    out: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1 and word.isalnum():
            run.append(word)
            continue
        out.extend(["".join(run)] if len(run) >= 3 else run)
        run = []
        if word:
            out.append(word)
    return out


# --- keywords -------------------------------------------------------------------------------

# A reply that is nothing but one of these (and polite words) is an opt-out.
KEYWORDS: dict[str, str] = {
    **dict.fromkeys(
        ["stop", "stopall", "stop all", "unsubscribe", "unsub", "unsuscribe", "unsubscribe me", "quit", "end", "cancel",
         "revoke", "optout", "opt out", "opt me out", "remove", "remove me", "stop it", "stop this", "stop now",
         "enough", "no more", "stop sending", "stop texting", "stop messaging", "stop emailing", "stop everything",
         "cancel all", "end all", "quit all", "stop stop", "unsubscribe all", "leave me alone", "take me off", "delete me",
         "stop texts", "stop emails", "stop messages", "no more texts", "no more emails", "no more messages", "unsubcribe",
         "unsubscibe", "unsubscrive", "unsubscirbe", "unsubscirbe me", "stp", "sotp", "stpo", "stopp", "quit it"],
        "en",
    ),
    **dict.fromkeys(
        ["arret", "arrete", "arreter", "arretez", "arretez tout", "arret tout", "desabonner", "desabonnement", "desabonne",
         "desabonnez moi", "desinscrire", "desinscription", "desinscrivez moi", "desinscris moi", "desabonne moi", "fin",
         "annuler", "retirer", "supprimer", "stop pub", "stop sms", "plus de sms", "plus de messages", "plus de mails",
         "plus de pub", "stop merci", "arret sms", "ne plus recevoir", "se desabonner", "me desabonner", "me desinscrire",
         "laissez moi tranquille", "retirez moi", "supprimez moi", "stop a tout", "arretez ca", "ca suffit"],
        "fr",
    ),
    **dict.fromkeys(
        ["alto", "baja", "dar de baja", "darme de baja", "dame de baja", "denme de baja", "de baja", "parar", "para",
         "pare", "paren", "basta", "basta ya", "cancelar", "detener", "salir", "eliminar", "borrar", "no mas",
         "no mas mensajes", "no mas correos", "no mas sms", "darse de baja", "cancelar suscripcion", "desuscribir",
         "desuscribirme", "desinscribir", "desinscribirme", "borrenme", "eliminenme", "quitenme", "dejen de escribir",
         "dejenme en paz", "alto ya", "ya basta", "baja por favor", "stop por favor"],
        "es",
    ),
    **dict.fromkeys(["abmelden", "abbestellen", "austragen", "kundigen", "keine werbung", "stoppen", "aufhoren"], "de"),
    **dict.fromkeys(["disiscrivimi", "cancellami", "cancella", "annulla", "disiscrivi", "rimuovimi", "disdici"], "it"),
    **dict.fromkeys(["sair", "descadastrar", "descadastre", "cancele", "remover", "pare de enviar", "chega"], "pt"),
}
# Words around a keyword that do not change what it says.
_POLITE = frozenset(
    "please pls plz plse thanks thank you thx ty now asap immediately already again ok okay just kindly sir madam "
    "merci svp stp s'il vous plait plait maintenant tout de suite deja sil vp oui "
    "por favor porfavor porfa gracias ya ahora mismo favor "
    "bitte danke sofort per favore grazie subito obrigado obrigada agora "
    "hey hi hello bonjour hola salut yo".split()
)
# An opening word that settles it, whatever follows ("STOP or I'll call my lawyer").
_OPENING = {"stop": "en", "stopall": "en", "unsubscribe": "en", "optout": "en", "unsub": "en", "arret": "fr",
            "arretez": "fr", "desabonner": "fr", "desabonnez": "fr", "desinscrire": "fr", "baja": "es"}

# --- requests in plain words (on the folded text) ------------------------------------------

_EN_SEND = r"(send\w*|text\w*|txt\w*|e ?mail\w*|mail\w*|messag\w*|contact\w*|spam\w*|bother\w*|call\w*|ping\w*|sms\w*|writ\w*|notif\w*|push\w*|harass\w*|promot\w*|advertis\w*)"
_EN_STUFF = r"(texts?|txts?|sms|e ?mails?|mails?|mailings?|messages?|msgs?|newsletters?|notifications?|promos?|promotions?|offers?|ads?|adverts?|marketing|spam|junk|deals|updates|alerts?|communications?|comms|solicitations?|whatsapps?)"
_FR_SEND = r"((m|t|l)'|nous )?(envo\w*|ecri\w*|contact\w*|spam\w*|harcel\w*|appel\w*|embet\w*|derang\w*|sollicit\w*|texto\w*|relanc\w*)"
_FR_STUFF = r"(envois?|sms|textos?|messages?|mails?|e ?mails?|courriels?|newsletters?|notifications?|pubs?|publicites?|offres?|promos?|promotions?|lettres? d'information|infolettres?|communications?|relances?)"
_ES_SEND = r"(envi\w*|mand\w*|escrib\w*|contact\w*|llam\w*|molest\w*|spam\w*|textear\w*|acos\w*)"
_ES_STUFF = r"(mensajes?|sms|textos?|correos?|e ?mails?|mails?|emails?|notificaciones?|publicidad\w*|promociones?|promos?|ofertas?|boletin\w*|newsletters?|comunicaciones?|anuncios?|whatsapps?)"

# (language, pattern): a match is a request to stop.
REQUESTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (language, re.compile(pattern))
    for language, pattern in (
        ("en", rf"\b(stop|quit|cease|end|halt|discontinue) (\w+ ){{0,2}}{_EN_SEND}"),
        ("en", rf"\b(stop|quit|cease|end|cancel|halt|discontinue) (all |the |these |this |your |my |any |those )*{_EN_STUFF}\b"),
        ("en", r"\bunsubscrib\w*|\bunsub\b|\bunsuscrib\w*|\bopt(ed|ing)? (me )?out\b|\boptout\b|\brevok\w* (my )?(consent|permission|subscription)"),
        ("en", rf"\bno (more|further|longer) (\w+ ){{0,2}}({_EN_STUFF}|contact)\b|^no (\w+ )?{_EN_STUFF}( please| thanks| thank you| pls)?$|\bno more of (these|this|them|it)\b"),
        ("en", rf"\b(enough|done) with (the |these |your |all )*{_EN_STUFF}\b|\bturn (off|of) (\w+ ){{0,2}}{_EN_STUFF}\b|\bquit it\b"),
        ("en", rf"\b(don'?t|do not|dont|never|pls don'?t|please don'?t) (\w+ ){{0,2}}{_EN_SEND} (me|us|my|to me)\b"),
        ("en", rf"\b(don'?t|do not|dont|never) (\w+ ){{0,1}}(want|need|wish) (to (get|receive|hear|see) )?(\w+ ){{0,3}}{_EN_STUFF}\b"),
        ("en", r"\b(don'?t|do not|dont|no longer|never) (\w+ ){0,1}(want|wish|like) to (be contacted|hear from you|receive|get)\b"),
        ("en", r"\b(don'?t|do not|dont) (want|need) (these|this|them|it|any of (this|these|it))( anymore| any more| please)*$"),
        ("en", r"\b(remove|delete|erase|take|drop|strike|scratch|get) (me|my (\w+ ){0,2}(number|email|address|name|info|details|data|account|contact)) (\w+ ){0,2}(off|from|out)\b"),
        ("en", r"\b(remove|delete|take|erase) (me|my (number|email|address|name|info|details|data|contact)|this (number|email|address))\b(?! \w+ (cart|bag|order|basket))"),
        ("en", r"\b(asked|told you|requested) (\w+ ){0,2}(to be removed|to stop|to unsubscribe|not to)\b"),
        ("en", r"\b(take|get|put) me off\b|\boff (your|the|this|ur) (list|mailing|database|system)"),
        ("en", r"\bleave me (alone|be)\b|\bgo away\b|\bget lost\b|\bf\w* off\b|\bbuzz off\b|\bsod off\b"),
        ("en", r"\b(i|we) (said|told you|asked you|already said|already asked)\b.{0,30}\b(stop|unsubscrib\w*|no more|remove|not to)\b"),
        ("en", r"\b(said|reply|replied|replying|texted|typed|wrote) (to )?stop\b"),
        ("en", r"\b(stop it|stop this|stop now|stop already|stop please|please stop|pls stop|plz stop|just stop|stop stop|stop all|stop everything|make it stop|stop for good)\b"),
        ("en", r"\bhow (do|can|to|would) (i |you |we )?(\w+ ){0,2}(stop|unsubscrib\w*|opt out|get off|be removed|cancel (these|this|the|your|my subscription))"),
        ("en", r"\b(cancel|end|terminate|close) (my |the |this )?(subscription|membership to (your|the) (list|newsletter)|sms plan|alerts?|newsletter)\b"),
        ("en", r"\b(i'?m|i am|already) (already )?(unsubscribed|opted out|out)\b|\bi (already )?unsubscribed\b"),
        ("en", r"\b(want|need|like|wish) (to be |to get |to |me )?(removed|off (your|the|this)|out of (your|the|this)|unsubscribed|deleted)\b"),
        ("en", r"\bwithdraw (my )?(consent|permission)\b|\bi (no longer )?(do not |don'?t )?consent\b"),
        ("en", r"\bdo not (contact|disturb|text|email|message)\b|\bdo ?not ?contact\b|\bdnc\b"),
        ("fr", rf"\b(arret\w*|cesse\w*|stop\w*) (\w+ ){{0,3}}{_FR_SEND}"),
        ("fr", rf"\b(arret\w*|cesse\w*|stop|fin|annul\w*) (\w+ ){{0,2}}{_FR_STUFF}\b"),
        ("fr", r"\bdesabonn\w*|\bdesinscri\w*|\bdesincri\w*|\bse desengager\b"),
        ("fr", rf"\bne (me |m'|nous )?(\w+ ){{0,1}}{_FR_SEND} plus\b|\bne (m'|me )?(envoy\w*|ecriv\w*|contact\w*) (\w+ ){{0,2}}plus\b"),
        ("fr", rf"\b(je |j')?ne (veux|souhaite|desire|voudrais) plus (\w+ ){{0,3}}(recevoir|rien|de |d'|vos |aucun|etre)"),
        ("fr", rf"\b(plus|pas|aucun\w*|plus jamais) de {_FR_STUFF}\b|\bne plus (m'|me |nous )?(\w+ ){{0,1}}{_FR_SEND}"),
        ("fr", r"\b(retir|supprim|effac|enlev|ray|sort)\w* (moi|mon (numero|adresse|mail|email|nom|compte|contact)|nous)\b"),
        ("fr", r"\b(retir|supprim|effac|enlev|ray|sort)\w* (\w+ ){0,3}(de|des|du) (votre |vos |la |ta |cette |les )?(liste|fichier|base|mailing|listes|contacts)"),
        ("fr", r"\blaisse[rz]? (moi|nous) (tranquille|en paix)\b|\bfou(tez|te) moi la paix\b|\bfichez moi la paix\b"),
        ("fr", r"\b(je veux|je voudrais|je souhaite|merci de|veuillez|pouvez vous|pourriez vous) (\w+ ){0,2}(arreter|me retirer|me desabonner|me desinscrire|supprimer mon|ne plus)\b"),
        ("fr", r"\b(arretez|arrete|arreter|stop) (ca|svp|s'il vous plait|maintenant|tout|immediatement|merci)\b"),
        ("fr", r"\bj'ai (deja )?(dit|demande|repondu|ecrit) (\w+ ){0,2}(stop|arret\w*|de ne plus|d'arreter)"),
        ("fr", r"\bcomment (je )?(peux je |puis je |faire pour |on )?(me )?(desabonn\w*|desinscri\w*|arreter|ne plus recevoir)"),
        ("es", rf"\b(deja\w*|dej\w*|par\w*|cese\w*|ces\w*) de {_ES_SEND}"),
        ("es", rf"\bya no (me |nos )?{_ES_SEND}|\bno (me |nos )?(\w+ ){{0,1}}{_ES_SEND} (\w+ ){{0,2}}mas\b|\bno (me |nos )?(vuelva\w*|vuelv\w*) a {_ES_SEND}"),
        ("es", rf"\b(ya )?no (quiero|deseo|necesito|quisiera) (\w+ ){{0,3}}({_ES_STUFF}|recibir|nada|mas)\b"),
        ("es", rf"\bno mas {_ES_STUFF}\b|\b(basta|alto|stop|fin) (de |a |con )?(\w+ ){{0,1}}{_ES_STUFF}\b"),
        ("es", r"\bdar(me|nos|se)? de baja\b|\bden(me)? de baja\b|\bdame de baja\b|\bde(n)? de baja\b|\bdarme baja\b|\bbaja (de|del) (la |su |tu )?(lista|suscripcion|boletin|servicio)"),
        ("es", r"\b(desuscrib\w*|desinscrib\w*|desubscrib\w*|anular (mi |la )?suscripcion|cancelar (mi |la )?suscripcion)\b"),
        ("es", r"\b(borr|elimin|quit|sac|saq|remuev)\w*(me|nos)\b|\b(borr|elimin|quit|sac|saq|remuev)\w* (mi (numero|correo|email|nombre|contacto|dato\w*)|me)\b"),
        ("es", r"\b(borr|elimin|quit|sac)\w* (\w+ ){0,3}de (su |tu |la |sus |esta )?(lista|base de datos|base|registro|listas)"),
        ("es", r"\bdej\w* (\w+ )?en paz\b|\bno (me )?molest\w*\b"),
        ("es", r"\bno (me|nos) (contact|escrib|envi|mand|llam)\w*( (mas|nunca|nada|por favor|ya))*$"),
        ("es", rf"\b(cancelar|detener|parar|anular) (los |mis |sus |estos |todos los )?{_ES_STUFF}\b"),
        ("es", r"\b(quiero|quisiera|deseo|por favor) (\w+ ){0,2}(darme de baja|que (me )?(dejen|borren|eliminen|quiten)|cancelar|dejar de recibir|no recibir)"),
        ("es", r"\b(ya )?(les )?(dije|pedi|escribi|respondi) (\w+ ){0,2}(stop|alto|baja|basta|que no|que paren|que dejen)"),
        ("es", r"\bcomo (me )?(puedo |hago para )?(me )?(dar de baja|darme de baja|desuscrib\w*|dejar de recibir|dejo de recibir|cancelar|doy de baja)"),
        ("es", r"\b(ya )?basta\b|\bparen( ya| por favor)?$|\bpare (ya|por favor)\b"),
        ("de", r"\b(abmelden|abbestellen|austragen|abmeldung|keine (werbung|nachrichten|sms|emails?|mails?) mehr|nicht mehr (kontaktieren|schreiben|anschreiben)|hort auf|horen sie auf)\b"),
        ("it", r"\b(disiscriv\w*|cancellami|rimuovimi|non (voglio|desidero) piu (ricevere|messaggi|email|sms)|smettete di|basta (messaggi|sms|email))\b"),
        ("pt", r"\b(descadastr\w*|parem de (enviar|mandar)|nao (quero|desejo) (mais )?receber|me (tire|remova) (da|de) (lista|sua lista)|cancelar (a )?inscricao)\b"),
    )
)

# Words that may mean an opt-out but do not say it clearly: a person decides.
MAYBES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (language, re.compile(pattern))
    for language, pattern in (
        ("en", r"\btoo (many|much|often)\b|\bso (many|often)\b|\bwho gave you\b|\b(fewer|less) (\w+ ){0,1}(texts|emails|messages|often|mail|spam)\b|\bso many (texts|emails|messages)\b"),
        ("en", r"\bnot interested\b|\bno interest\b|\bwrong (number|person|email)\b|\bwho (is|are) (this|you)\b|\bhow did you get (my|this)\b|\bnever (signed|subscribed|asked)\b|\bdidn'?t (sign|subscribe|ask)\b"),
        ("en", r"\bwhy (do|are|does|did) you (keep )?(\w+ ){0,1}(text|email|messag|send|contact)\w*|\bspam(ming|mer|my)?\b|\bannoying\b|\bhate (these|your|getting)\b"),
        ("en", r"^(no|nope|nah|no thanks|no thank you|no ty|not now|not for me|pass|n)$|\bno thanks\b|\bnot anymore\b|\bi'?m good\b$"),
        ("en", r"\b(pause|take a break|break from|hold off|snooze)\b"),
        ("fr", r"\btrop de (messages|sms|mails|e ?mails|courriels|pubs?)\b|\bpas interesse\w*\b|\bmauvais numero\b|\bqui (etes vous|est ce)\b|^non( merci)?$|\bnon merci\b|\bsans interet\b|\bca suffit\b|\bharcelement\b|^c'est trop\b"),
        ("es", r"\bdemasiad[oa]s (mensajes|correos|sms|emails)\b|\bson demasiad[oa]s\b|\bno me interesa\b|\bnumero equivocado\b|\bquien (es|eres|son)\b|^no( gracias)?$|\bno gracias\b|\bya no\b$"),
    )
)

# Uses of an opt-out word that ask for nothing: the word alone decides nothing then.
_HARMLESS = re.compile(
    r"\b(bus|pit|one|last|next|first|tour|rest|truck|pit|whistle|full|non|nonstop|photo|shop) stop\b|\bstop (by|in|at|into|over|past|and shop)\b"
    r"|\b(can'?t|cannot|couldn'?t|won'?t|never|don'?t|do not|wouldn'?t) (\w+ ){0,1}stop (wearing|using|buying|loving|smiling|eating|thinking|talking|telling|looking|ordering|shopping|reading)\b"
    r"|\b(can'?t|cannot|couldn'?t|never|don'?t|do not|won'?t) (ever )?stop\b(?! (texting|emailing|messaging|contacting) me)"
    r"|\bstop press\b|\bcancelar (mi|el|la|un|una|mis|los|las) (?!suscripcion|subscripcion)\w+"
    r"|\bunstoppable\b|\bstop ?watch\b|\bstop ?gap\b|\bdoor ?stop\w*\b|\bstop loss\b|\bstop sign\b"
    r"|\b(end|fin) (of|du|de|del)\b|\bweekend\b|\bend (date|time|of)\b|\bcancel (my|the|this|an|an?) (order|purchase|appointment|booking|reservation|return|exchange|payment|item)\b"
    r"|\bremove (the|an?|this|that|one|it) (\w+ ){0,2}(from|in) (my|the) (cart|bag|basket|order|wishlist|list)\b"
    r"|\b(para|pare) (mi|el|la|los|las|que|ti|usted|ustedes|cuando|comprar|regalo|hombre|mujer|nino|nina|mi hija|mi hijo|ver)\b"
)
# A negation just before the opt-out words turns them around, or into a question for a person.
_NEGATED = re.compile(
    r"\b(don'?t|do not|dont|never|not|no need to|won'?t|wouldn'?t|ne|pas|no) (\w+ ){0,2}(unsubscrib\w*|opt (me )?out|remove me|desabonn\w*|dar(me)? de baja|cancel (my )?subscription)"
)
_STRAY = re.compile(r"\b(stop|stopall|unsubscribe|unsub|optout|arret|arretez|desabonner|baja|alto|remove me|opt out)\b")

# --- scope ------------------------------------------------------------------------------------

CHANNEL_WORDS: dict[str, re.Pattern[str]] = {
    "sms": re.compile(r"\b((my |phone |cell |mobile )number|cell ?phone|mobile|numero|telefono|celular|portable|texts?|texting|texted|txts?|sms|smss|textos?|texto|mensajes de texto|messages? textes?|text messages?|mms)\b"),
    "email": re.compile(r"\b(e ?mails?|e ?mailing|emailing|emails|mails?|mailings?|newsletters?|courriels?|correos?( electronicos?)?|infolettres?|boletin\w*|inbox|mailbox)\b"),
    "whatsapp": re.compile(r"\b(whats ?app\w*|wa messages?)\b"),
    "push": re.compile(r"\b(push( notifications?)?|notifications?|notifs?|notificaciones?|app alerts?)\b"),
}
_EVERY = re.compile(
    r"\b(stopall|everything|anything|all channels|all (of )?(your |the |these )?(communications|comms|marketing|contact|messages|mailings|lists|promotions|promos|ads|of (it|this|them|that))"
    r"|(stop|unsubscribe|cancel|quit|end|remove me from) all\b(?! (\w+ )?(texts?|sms|e ?mails?|mails?|notifications?|whatsapp))|from all\b|any (way|form|channel|kind)"
    r"|tout|tous les (messages|envois|canaux|communications)|toutes (les|vos) (communications|listes)|rien|tout court|partout"
    r"|todo|todos (los|sus) (mensajes|canales|medios|correos y)|nada|ningun\w* (medio|canal|tipo)|alles|tutto|niente|everywhere|every (list|channel|way))\b"
)


def detect(text: str) -> OptOut:
    """Read one reply: an opt-out (and from what), maybe one, or none."""
    folded = fold(text)
    if not folded:
        return OptOut(Verdict.none)
    words = folded.split()
    core = " ".join(word for word in words if word not in _POLITE) or folded
    if core in KEYWORDS or all(word in KEYWORDS for word in core.split()):
        return _scoped(Verdict.revoke, folded, KEYWORDS.get(core) or KEYWORDS[core.split()[0]], core)
    run_together = _run_together(folded)
    if run_together is not None:
        return _scoped(Verdict.revoke, folded, KEYWORDS[run_together], run_together)
    if words[0] in _OPENING and not _HARMLESS.match(folded):
        return _scoped(Verdict.revoke, folded, _OPENING[words[0]], words[0])
    negated = _NEGATED.search(folded)
    for language, pattern in REQUESTS:
        found = pattern.search(folded)
        if found and not _harmless_at(folded, found):
            if negated and negated.start() <= found.start() <= negated.end():
                return _scoped(Verdict.unclear, folded, language, negated.group(0))
            return _scoped(Verdict.revoke, folded, language, found.group(0))
    for language, pattern in MAYBES:
        found = pattern.search(folded)
        if found:
            return _scoped(Verdict.unclear, folded, language, found.group(0))
    stray = _STRAY.search(folded)
    if stray and not _harmless_at(folded, stray):
        return _scoped(Verdict.unclear, folded, "en", stray.group(0))
    return OptOut(Verdict.none)


_COMPACT_KEYWORDS = {keyword.replace(" ", ""): keyword for keyword in KEYWORDS}
_FILLERS = frozenset(word.replace("'", "") for word in _POLITE) | {"me"}
_LONGEST = max(map(len, [*_COMPACT_KEYWORDS, *_FILLERS]))


def _run_together(folded: str) -> str | None:
    """The keyword of a reply whose words were run together or split ("UN SUB SCRIBE",
    "S T O P P L E A S E" -> "stopplease"): the letters, spaces dropped, split into keywords
    and polite words only. Returns the first keyword, or None."""
    compact = folded.replace(" ", "").replace("'", "")
    if not compact.isalpha() or len(compact) > 40:
        return None
    # best[i]: a split of compact[:i], as the first keyword found so far ("" if none yet).
    best: list[str | None] = [""] + [None] * len(compact)
    for end in range(1, len(compact) + 1):
        for start in range(max(0, end - _LONGEST), end):
            piece, before = compact[start:end], best[start]
            if before is None:
                continue
            if piece in _COMPACT_KEYWORDS:
                best[end] = before or _COMPACT_KEYWORDS[piece]
                break
            if piece in _FILLERS and best[end] is None:
                best[end] = before
    return best[-1] or None


def _harmless_at(folded: str, found: re.Match[str]) -> bool:
    """The match overlaps a harmless use ("stop by the store", "quiero cancelar mi pedido")."""
    return any(h.start() < found.end() and found.start() < h.end() for h in _HARMLESS.finditer(folded))


def _scoped(verdict: Verdict, folded: str, language: str, evidence: str) -> OptOut:
    named = frozenset(channel for channel, pattern in CHANNEL_WORDS.items() if pattern.search(folded))
    every = bool(_EVERY.search(folded)) or folded.split()[0] == "stopall"
    return OptOut(verdict, named, every, language, evidence)
