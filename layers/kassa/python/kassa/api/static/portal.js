"use strict";
// Shared by the customer pages under /portal (the card page, the hosted invoice page): JSON calls,
// Stripe.js, saving a card or a SEPA bank account (SetupIntent; the IBAN checked first, the mandate
// accepted) and confirming an invoice's PaymentIntent (3-D Secure).
// Loaded from 'self' (the pages' CSP allows no other script but Stripe.js and the card page's own).
window.kassaPortal = (function () {
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) {
      // the error's code too (link_expired, link_invalid …): a page may say it in the customer's words
      const error = new Error((data.error && data.error.message) || response.statusText);
      error.code = data.error && data.error.code;
      throw error;
    }
    return data;
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src; s.onload = resolve; s.onerror = () => reject(new Error("could not load Stripe.js"));
      document.head.appendChild(s);
    });
  }

  // Stripe.js (locally, localstripe's shim) for a session answer ({stripe_js_url, publishable_key})
  async function stripeFor(session) {
    if (typeof Stripe === "undefined") await loadScript(session.stripe_js_url);
    return Stripe(session.publishable_key);
  }

  // a new card: Stripe.js confirms the SetupIntent; the page then asks kassa to save it and charge
  async function confirmCard(stripe, clientSecret, card) {
    const confirmed = await stripe.confirmCardSetup(clientSecret, {payment_method: {card}});
    if (confirmed.error) throw new Error(confirmed.error.message);
    return confirmed;
  }

  // 3-D Secure for one invoice's PaymentIntent: Stripe.js asks the bank, then kassa applies the
  // outcome (POST confirmUrl with body + payment_intent; it answers {invoices: [row]}); nothing is
  // charged again. Returns the invoice's row ({status, number, …}).
  async function authenticate(stripe, confirmUrl, body, clientSecret, paymentIntent, paymentMethod) {
    const data = paymentMethod ? {payment_method: paymentMethod} : undefined;
    const confirmed = await stripe.confirmCardPayment(clientSecret, data);
    const intent = (confirmed.paymentIntent && confirmed.paymentIntent.id) || paymentIntent;
    const done = await post(confirmUrl, Object.assign({}, body, {payment_intent: intent}));
    const row = done.invoices[0] || {};
    if (confirmed.error && row.status !== "paid") throw new Error(confirmed.error.message || "The authentication failed.");
    return row;
  }

  // ---- a bank account instead of a card (SEPA Direct Debit), where the session offers it. The page
  // has the same elements as the card page: radios name=method (card / sepa_debit), #methods, #card,
  // #iban-box, #iban, #account-holder, #mandate-text, #mandate-accept-text, #mandate-ok.
  const byId = (id) => document.getElementById(id);

  // a syntactically valid IBAN with correct check digits (ISO 13616 mod 97), spaces removed; else null
  function ibanOk(text) {
    const value = text.replace(/\s/g, "").toUpperCase();
    if (!/^[A-Z]{2}\d{2}[A-Z0-9]{10,30}$/.test(value)) return null;
    let rest = 0;
    for (const ch of value.slice(4) + value.slice(0, 4)) {
      const digits = /[A-Z]/.test(ch) ? String(ch.charCodeAt(0) - 55) : ch;
      for (const d of digits) rest = (rest * 10 + Number(d)) % 97;
    }
    return rest === 1 ? value : null;
  }

  const offersBankAccount = (session) => (session.payment_method_types || []).includes("sepa_debit") && !!session.mandate;

  function bankChosen() {
    const chosen = document.querySelector("input[name=method]:checked");
    return !!chosen && chosen.value === "sepa_debit";
  }

  // show the card / bank account choice and the mandate (its text names the merchant and its creditor
  // identifier, in the customer's language); onSwitch(bank) after the customer picks one
  function showBankChoice(session, onSwitch) {
    byId("methods").hidden = false;
    byId("mandate-text").textContent = session.mandate.sepa_debit;
    byId("mandate-text").lang = session.mandate.language;
    byId("mandate-accept-text").textContent = session.mandate.sepa_debit_accept;
    byId("mandate-accept-text").lang = session.mandate.language;
    byId("account-holder").value = (session.customer && session.customer.name) || "";
    document.querySelectorAll("input[name=method]").forEach((r) => r.addEventListener("change", () => {
      const bank = bankChosen();
      byId("card").hidden = bank;
      byId("iban-box").hidden = !bank;
      if (onSwitch) onSwitch(bank);
    }));
  }

  // what the customer typed: {iban, name}, or {error: "iban_invalid" | "mandate_required"} (a word key)
  function bankDetails() {
    const iban = ibanOk(byId("iban").value);
    if (!iban) return {error: "iban_invalid"};
    if (!byId("mandate-ok").checked) return {error: "mandate_required"};
    return {iban, name: byId("account-holder").value};
  }

  // Stripe.js confirms the SetupIntent with the bank account; the page then asks kassa to save it
  async function confirmBankAccount(stripe, session, details) {
    const customer = session.customer || {};
    const confirmed = await stripe.confirmSepaDebitSetup(session.client_secret, {payment_method: {
      sepa_debit: {iban: details.iban}, billing_details: {name: details.name || customer.name || "", email: customer.email}}});
    if (confirmed.error) throw new Error(confirmed.error.message);
    return confirmed;
  }

  return {
    post, loadScript, stripeFor, confirmCard, authenticate,
    ibanOk, offersBankAccount, bankChosen, showBankChoice, bankDetails, confirmBankAccount,
  };
})();
