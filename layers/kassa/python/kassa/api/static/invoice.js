"use strict";
// The hosted invoice page's Pay button (the page itself is rendered on the server). The shared portal
// script does the Stripe.js work: a new card (or, where the merchant offers it, a SEPA bank account
// under the mandate accepted here) confirms a SetupIntent, kassa charges this invoice on-session, and a
// payment the bank wants confirmed (3-D Secure) is confirmed here. A bank debit is then processing.
(function () {
  const $ = (id) => document.getElementById(id);
  const data = JSON.parse($("invoice-data").textContent);
  const words = data.strings;
  const token = data.token;
  // /<stage>/portal/invoices/<token> → /<stage>/portal/invoices
  const base = location.pathname.replace(/\/invoices\/[^/]+\/?$/, "/invoices");
  const call = (path, body) => kassaPortal.post(`${base}/${path}`, Object.assign({token}, body || {}));

  function say(text, cls) { const m = $("message"); m.textContent = text; m.className = cls || ""; }

  function paid() {
    say(words.paid_message, "ok");
    $("form").hidden = true;
    // shown again from the server: "Paid on …", no button
    location.replace(location.pathname + "?paid=1");
  }

  // a bank debit: with the bank for a few business days (the server's page says so too, no button)
  function processing() {
    say(words.processing_message, "ok");
    $("form").hidden = true;
    $("pay-intro").hidden = true;
  }

  async function main() {
    let session;
    try {
      session = await call("session");
    } catch (error) {
      say(error.message, "error");
      return;
    }
    if (session.mode !== "pay" && session.mode !== "authenticate") {  // paid or void meanwhile
      location.replace(location.pathname);
      return;
    }
    const stripe = await kassaPortal.stripeFor(session);
    const authenticate = (secret, intent, method) =>
      kassaPortal.authenticate(stripe, `${base}/confirm_payment`, {token}, secret, intent, method);
    const payIntro = $("pay-intro").textContent, payLabel = $("pay-button").textContent;
    const secureNote = $("secure-note").querySelector("span");
    const cardNote = secureNote.textContent;
    let card = null, bankShown = false;
    // authenticate: confirm the invoice's own PaymentIntent (no card to type); pay: a new card, or a
    // bank account where the session offers one (as on the card page: IBAN, holder, the SEPA mandate)
    function show(mode) {
      const confirming = mode === "authenticate";
      const bankOffered = !confirming && kassaPortal.offersBankAccount(session);
      if (bankOffered && !bankShown) {
        kassaPortal.showBankChoice(session);
        bankShown = true;
      }
      const bank = bankOffered && kassaPortal.bankChosen();
      $("pay-intro").textContent = confirming ? $("pay-intro").dataset.confirm : bankOffered ? $("pay-intro").dataset.bank : payIntro;
      secureNote.textContent = bankOffered ? $("secure-note").dataset.bank : cardNote;
      $("pay-button").textContent = confirming ? words.confirm_button : payLabel;
      $("methods").hidden = !bankOffered;
      $("iban-box").hidden = !bank;
      $("card").hidden = confirming || bank;
      if (!confirming && card === null) {
        card = stripe.elements().create("card");
        card.mount("#card");
      }
    }
    show(session.mode);
    $("form").hidden = false;
    say("");
    // a wrong IBAN or the mandate not accepted: said until the customer changes the form
    $("iban-box").addEventListener("change", () => { if ($("message").className === "error") say(""); });
    $("form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const bank = session.mode === "pay" && kassaPortal.bankChosen();
      const details = bank ? kassaPortal.bankDetails() : null;
      if (details && details.error) {
        say(words[details.error], "error");
        return;
      }
      $("pay-button").disabled = true;
      try {
        let row;
        if (session.mode === "authenticate") {
          say(words.confirming);
          row = await authenticate(session.payment_intent_client_secret, session.payment_intent, session.payment_method);
        } else {
          say(words.processing);
          if (bank) await kassaPortal.confirmBankAccount(stripe, session, details);
          else await kassaPortal.confirmCard(stripe, session.client_secret, card);
          const done = await call("pay", {setup_intent_id: session.setup_intent_id});
          row = done.invoices[0] || {};
          if (row.requires_action && row.payment_intent_client_secret) {
            say(words.confirming);
            try {
              row = await authenticate(row.payment_intent_client_secret, row.payment_intent, null);
            } catch (error) {
              row = {status: "open", authentication_failed: true};
            }
          }
        }
        if (row.status === "paid") {
          paid();
          return;
        }
        if (row.processing) {
          processing();
          return;
        }
        const failed = session.mode === "authenticate" || row.authentication_failed;
        say(failed ? words.auth_failed : words.declined, "error");
        session = await call("session");  // a fresh SetupIntent (or the intent to confirm again)
        if (session.mode !== "pay" && session.mode !== "authenticate") {
          location.replace(location.pathname);
          return;
        }
        show(session.mode);
        $("pay-button").disabled = false;
      } catch (error) {
        say(error.message || words.error, "error");
        $("pay-button").disabled = false;
      }
    });
  }
  main();
})();
